"""`lrdecay plot` on a 30-run sweep, timed as a user sees it (a fresh process, imports included).

Writes a synthetic sweep (10 methods x 3 seeds, 5 epochs of 860 steps: the CSV sizes of a real
MNIST sweep at batch size 64) into a temporary directory, so it runs on any machine without
training. Prints the median seconds of `--repeats` runs and the ratio against issue #6's 3 s target.

    python bench/plot_speed.py [--runs 30] [--epochs 5] [--steps-per-epoch 860] [--format png] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TARGET_SECONDS = 3.0
METHODS = ("constant", "step", "exponential", "inverse_time", "cosine", "linear", "polynomial",
           "plateau", "one_cycle", "warmup_cosine")


def lr_at(method: str, step: int, total: int, spe: int) -> float:
    """A plausible LR curve per method name (only the shape matters for plotting time)."""
    t = step / total
    return 0.1 * {
        "constant": 1.0, "step": 0.3 ** (step // (2 * spe)), "exponential": 0.5 ** (step / spe),
        "inverse_time": 1 / (1 + step / spe), "cosine": 0.5 * (1 + math.cos(math.pi * t)), "linear": 1 - t,
        "polynomial": (1 - t) ** 2, "plateau": 0.3 ** (step // (3 * spe)), "one_cycle": math.sin(math.pi * t) + 0.01,
        "warmup_cosine": min(1.0, step / spe) * 0.5 * (1 + math.cos(math.pi * t)),
    }[method]


def write_sweep(root: Path, runs: int, epochs: int, spe: int) -> Path:
    """A sweep directory lrdecay reads like a real one: sweep.yaml and t000... trial directories."""
    sweep = root / "sweeps" / "20260101-000000-bench"
    sweep.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"name": "bench"}))
    total = epochs * spe
    for index in range(runs):
        method, seed = METHODS[(index // 3) % len(METHODS)], index % 3
        trial = sweep / f"t{index:03d}"
        trial.mkdir()
        config = {"name": "bench", "seed": seed, "model": {"name": "mlp", "hidden": [128]},
                  "optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"name": method, "variant": index // 30},
                  "train": {"epochs": epochs, "batch_size": 64}}
        (trial / "config.yaml").write_text(yaml.safe_dump(config))
        lrs = [lr_at(method, step, total, spe) for step in range(total)]
        losses = [2.3 / (1 + 5 * step / total) + 0.1 * math.sin(step * (seed + 1.7)) for step in range(total)]
        (trial / "lr.csv").write_text("step,lr,loss\n" + "".join(f"{s},{lr!r},{loss!r}\n"
                                                                for s, (lr, loss) in enumerate(zip(lrs, losses))))
        rows = ["epoch,step,lr,train_loss,train_acc,val_loss,val_acc,seconds"]
        for epoch in range(1, epochs + 1):
            loss = 0.4 / epoch + 0.01 * seed + 0.003 * index
            rows.append(f"{epoch},{epoch * spe},{lrs[epoch * spe - 1]!r},{loss!r},{1 - loss / 3!r},"
                        f"{loss * 1.1!r},{1 - loss / 2.8!r},{0.6 * epoch!r}")
        (trial / "metrics.csv").write_text("\n".join(rows) + "\n")
        summary = {"status": "completed", "name": "bench", "seed": seed, "epochs": epochs,
                   "epochs_completed": epochs, "steps": total, "steps_per_epoch": spe, "diverged": None}
        (trial / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return sweep


def time_plot(target: Path, out: Path, fmt: str) -> float:
    command = [sys.executable, "-m", "lrdecay_cli", "plot", str(target), "--out", str(out), "--format", fmt]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=860)
    parser.add_argument("--format", default="png", choices=["png", "svg", "pdf"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = write_sweep(Path(tmp), args.runs, args.epochs, args.steps_per_epoch)
        one = statistics.median(time_plot(sweep / "t000", Path(tmp) / "one", args.format) for _ in range(args.repeats))
        many = statistics.median(time_plot(sweep, Path(tmp) / "many", args.format) for _ in range(args.repeats))
    print(f"lrdecay plot, {args.format}, {args.epochs} epochs x {args.steps_per_epoch} steps per run "
          f"(median of {args.repeats}):")
    print(f"  1 run:   {one:.2f} s")
    print(f"  {args.runs} runs: {many:.2f} s   ({many / one:.2f}x one run)")
    print(f"  target {TARGET_SECONDS:.1f} s for 30 runs: {many / TARGET_SECONDS:.2f} of it "
          f"({'met' if many <= TARGET_SECONDS else 'MISSED'})")


if __name__ == "__main__":
    main()
