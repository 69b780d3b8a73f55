"""A small study two ways: `lrdecay study --executor sequential` versus `--executor vectorized` (each
budget's methods x LRs as one stacked model), each a whole command timed from start to exit.

Prints each command's wall time, the study's model-epochs per second (tuning and final stages together)
and the ratio; the runs are interleaved and the fastest of --repeat counts, so that load on a shared
machine falls on both alike.

    python bench/study_speed.py [--methods 4] [--lrs 4] [--budgets 1,2] [--seeds 2] [--limit 20000]
                                [--device auto] [--repeat 1] [--record FILE]
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

METHODS = [{"schedule": {"name": "constant"}}, {"schedule": {"name": "cosine", "interval": "step"}},
           {"schedule": {"name": "linear", "interval": "step"}},
           {"schedule": {"name": "exponential", "decay_steps": 200, "decay_rate": 0.5}},
           {"schedule": {"name": "inverse_time", "decay_steps": 100, "decay_rate": 1.0}},
           {"schedule": {"name": "plateau", "factor": 0.3, "patience": 0, "interval": "epoch"}}]


def study_file(args, folder: Path) -> Path:
    lrs = [round(0.01 * 3 ** i, 4) for i in range(args.lrs)]
    study = {"name": "bench", "methods": METHODS[:args.methods], "lrs": lrs,
             "budgets": [int(b) for b in args.budgets.split(",")], "seeds": args.seeds,
             "base": {"data": {"limit": args.limit, "val_size": 1000}, "optimizer": {"name": "sgd", "momentum": 0.9},
                      "train": {"device": args.device}}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def model_epochs(args) -> int:
    budgets = sum(int(b) for b in args.budgets.split(","))
    return args.methods * budgets * (args.lrs + args.seeds)


def time_command(path: Path, executor: str, runs: Path) -> float:
    """Wall time of one whole `lrdecay study` command; every final run must complete."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lrdecay_cli", "study", str(path), "--runs-dir", str(runs), "--quiet",
                    "--executor", executor], check=True)
    seconds = time.perf_counter() - start
    with (max((runs / "studies").iterdir()) / "final" / "results.csv").open() as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert statuses == ["completed"] * len(statuses), statuses
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=4, choices=range(1, len(METHODS) + 1))
    parser.add_argument("--lrs", type=int, default=4)
    parser.add_argument("--budgets", default="1,2")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=20_000, help="training images before the 1,000 held out")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--record", type=Path, help="append a tab-separated result row to this file")
    args = parser.parse_args()
    ensure_mnist(default_data_root())
    device = resolve_device(args.device)
    work = model_epochs(args)
    print(f"study of {args.methods} methods x {args.lrs} LRs x budgets {args.budgets} (+ {args.seeds} final seeds): "
          f"{work} model-epochs of the mlp on {args.limit - 1000} images, {device_name(device)}; whole command, "
          f"fastest of {args.repeat}")
    times: dict[str, list[float]] = {"vectorized": [], "sequential": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = study_file(args, Path(tmp))
        for _ in range(args.repeat):
            for name in times:
                times[name].append(time_command(path, name, Path(tmp) / name))
    vectorized, sequential = min(times["vectorized"]), min(times["sequential"])
    print(f"  vectorized {vectorized:6.2f} s ({work / vectorized:5.2f} model-epochs/s)   sequential {sequential:6.2f} s "
          f"({work / sequential:5.2f})   speed-up {sequential / vectorized:.2f}x", flush=True)
    if args.record:
        row = ["study-mlp", device.type, 64, "fp32", f"{sequential:.2f}", f"{vectorized:.2f}",
               f"{sequential / vectorized:.2f}x", f"{work / vectorized:.2f} me/s"]
        with args.record.open("a") as f:
            f.write("\t".join(map(str, row)) + "\n")


if __name__ == "__main__":
    main()
