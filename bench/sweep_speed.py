"""The same 16-trial sweep two ways on this machine: sequential versus vectorized (one stacked model).

Prints model-epochs per second for each and their ratio. Issue #4's targets: on 2 CPU cores with
the mlp, vectorized >= 2x sequential; on an H200 with the cnn, >= 10 model-epochs per second.

    python bench/sweep_speed.py [--model mlp|cnn] [--trials 16] [--epochs 1] [--batch-size 64]
                                [--device auto] [--precision fp32|bf16] [--skip-sequential] [--record FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lrdecay_cli import sweep as sweeps
from lrdecay_cli.data import default_data_root, ensure_mnist
from lrdecay_cli.device import device_name, resolve_device
from lrdecay_cli.executors import run

TARGETS = {("cpu", "mlp"): ("ratio", 2.0), ("cuda", "cnn"): ("model-epochs/s", 10.0)}


def make_trials(args) -> list:
    """`trials` members: four decay methods x learning rates x seeds, all stackable together."""
    methods = [{"name": "constant"}, {"name": "exponential", "decay_steps": 200, "decay_rate": 0.5},
               {"name": "inverse_time", "decay_steps": 100, "decay_rate": 1.0},
               {"name": "step", "step_size": 1, "gamma": 0.5}]
    sweep = sweeps.SweepSpec(
        name="bench", variants=[{"schedule": m} for m in methods],
        grid={"optimizer.lr": [0.1, 0.03]}, seeds=max(1, args.trials // 8))
    base = {"model": {"name": args.model}, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
                      "precision": args.precision}}
    return sweeps.expand(sweep, base, "bench/sweep_speed.py")[:args.trials]


def time_executor(name: str, trials: list) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        statuses = []
        run(name, trials, Path(tmp), on_start=lambda t: None, on_done=lambda t, s: statuses.append(s["status"]),
            workers=1)
        seconds = time.perf_counter() - start
    assert statuses == ["completed"] * len(trials), statuses
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--record", type=Path, help="append a tab-separated result row to this file")
    args = parser.parse_args()
    ensure_mnist(default_data_root())
    device = resolve_device(args.device)
    trials = make_trials(args)
    model_epochs = len(trials) * args.epochs
    vectorized = time_executor("vectorized", trials)
    sequential = None if args.skip_sequential else time_executor("sequential", trials)
    print(f"\n{len(trials)} trials x {args.epochs} epoch(s) of the {args.model} on {device_name(device)}, "
          f"batch {args.batch_size}, {args.precision} (wall time includes loading data and writing run dirs)")
    if sequential is not None:
        print(f"  sequential : {sequential:7.2f} s  {model_epochs / sequential:6.2f} model-epochs/s")
    print(f"  vectorized : {vectorized:7.2f} s  {model_epochs / vectorized:6.2f} model-epochs/s")
    ratio = None if sequential is None else sequential / vectorized
    if ratio is not None:
        print(f"  speed-up   : {ratio:.2f}x")
    target = TARGETS.get((device.type, args.model))
    if target:
        kind, bound = target
        value = ratio if kind == "ratio" else model_epochs / vectorized
        if value is not None:
            print(f"  target     : {kind} >= {bound}: {'met' if value >= bound else 'MISSED'}")
    if args.record:
        row = [f"sweep-{args.model}", device.type, args.batch_size, args.precision,
               "-" if sequential is None else f"{sequential:.2f}", f"{vectorized:.2f}",
               "-" if ratio is None else f"{ratio:.2f}x", f"{model_epochs / vectorized:.2f} me/s"]
        with args.record.open("a") as f:
            f.write("\t".join(map(str, row)) + "\n")


if __name__ == "__main__":
    main()
