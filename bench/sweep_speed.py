"""The same 16-trial sweep two ways: `lrdecay sweep --executor sequential` versus `--executor vectorized`
(one stacked model), each a whole command timed from start to exit (start-up, data loading and run
directories included), for SGD, Adam and RMSprop trials.

Prints each command's wall time, model-epochs per second and the ratio. Targets: on 2 CPU cores with
the mlp, vectorized >= 2x sequential (SGD); on an H200 with the cnn, >= 10 model-epochs per second.

    python bench/sweep_speed.py [--model mlp|cnn] [--trials 16] [--epochs 1] [--batch-size 64]
                                [--optimizers sgd,adam,rmsprop] [--device auto] [--precision fp32|bf16]
                                [--skip-sequential] [--repeat 1] [--record FILE]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lrdecay_cli.training.data import default_data_root, ensure_mnist
from lrdecay_cli.training.device import device_name, resolve_device

TARGETS = {("cpu", "mlp", "sgd"): ("ratio", 2.0), ("cuda", "cnn", "sgd"): ("model-epochs/s", 10.0)}
OPTIMIZERS = {"sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "adam": {"name": "adam", "lr": 0.001},
              "rmsprop": {"name": "rmsprop", "lr": 0.001}}
METHODS = [{"name": "constant"}, {"name": "exponential", "decay_steps": 200, "decay_rate": 0.5},
           {"name": "inverse_time", "decay_steps": 100, "decay_rate": 1.0},
           {"name": "step", "step_size": 1, "gamma": 0.5, "interval": "epoch"}]


def sweep_file(args, optimizer: str, folder: Path) -> Path:
    """`trials` trials that stack together: four decay methods x two initial LRs x seeds."""
    lr = OPTIMIZERS[optimizer]["lr"]
    sweep = {"name": f"bench-{optimizer}", "variants": [{"schedule": m} for m in METHODS],
             "grid": {"optimizer.lr": [lr, lr / 3]}, "seeds": max(1, args.trials // 8),
             "base": {"model": {"name": args.model}, "optimizer": OPTIMIZERS[optimizer],
                      "train": {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
                                "precision": args.precision}}}
    path = folder / f"{optimizer}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def time_command(path: Path, executor: str, runs: Path) -> float:
    """Wall time of one whole `lrdecay sweep` command; every trial must complete."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lrdecay_cli", "sweep", str(path), "--runs-dir", str(runs), "--quiet",
                    "--executor", executor], check=True)
    seconds = time.perf_counter() - start
    sweep_dir = max((runs / "sweeps").iterdir())
    with (sweep_dir / "results.csv").open() as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert statuses == ["completed"] * len(statuses), statuses
    return seconds


def fastest(path: Path, executors: list[str], runs: Path, repeat: int) -> dict[str, float]:
    """Each executor's fastest of `repeat` runs, the runs interleaved, so that load on a shared machine
    falls on both alike and the least disturbed run of each is compared."""
    times: dict[str, list[float]] = {name: [] for name in executors}
    for _ in range(repeat):
        for name in executors:
            times[name].append(time_command(path, name, runs / name))
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizers", default="sgd,adam,rmsprop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command, interleaved; the fastest counts")
    parser.add_argument("--record", type=Path, help="append a tab-separated result row per optimizer to this file")
    args = parser.parse_args()
    ensure_mnist(default_data_root())
    device = resolve_device(args.device)
    trials = 8 * max(1, args.trials // 8)
    model_epochs = trials * args.epochs
    print(f"{trials} trials x {args.epochs} epoch(s) of the {args.model} on {device_name(device)}, batch "
          f"{args.batch_size}, {args.precision}; wall time of the whole lrdecay sweep command, fastest of "
          f"{args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        for optimizer in args.optimizers.split(","):
            path = sweep_file(args, optimizer, Path(tmp))
            times = fastest(path, ["vectorized"] + ([] if args.skip_sequential else ["sequential"]),
                            Path(tmp) / optimizer, args.repeat)
            vectorized, sequential = times["vectorized"], times.get("sequential")
            ratio = None if sequential is None else sequential / vectorized
            line = f"  {optimizer:8s} vectorized {vectorized:6.2f} s ({model_epochs / vectorized:5.2f} model-epochs/s)"
            if sequential is not None:
                line += f"   sequential {sequential:6.2f} s ({model_epochs / sequential:5.2f})   speed-up {ratio:.2f}x"
            target = TARGETS.get((device.type, args.model, optimizer))
            if target:
                kind, bound = target
                value = ratio if kind == "ratio" else model_epochs / vectorized
                if value is not None:
                    line += f"   target {kind} >= {bound}: {'met' if value >= bound else 'MISSED'}"
            print(line, flush=True)
            if args.record:
                row = [f"sweep-{args.model}-{optimizer}", device.type, args.batch_size, args.precision,
                       "-" if sequential is None else f"{sequential:.2f}", f"{vectorized:.2f}",
                       "-" if ratio is None else f"{ratio:.2f}x", f"{model_epochs / vectorized:.2f} me/s"]
                with args.record.open("a") as f:
                    f.write("\t".join(map(str, row)) + "\n")


if __name__ == "__main__":
    main()
