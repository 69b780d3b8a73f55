"""The LR range test (Smith 2015, "Cyclical Learning Rates", section 3.3): train from the spec's initial
weights while the LR grows exponentially, and suggest an initial LR from how the loss responds.

The rules follow fastai (`LRFinder`, `Recorder`'s smoothed loss, `minimum`) and PyTorch Lightning
(`tuner/lr_finder.py`: `_LRCallback`, `suggestion`):
  lr of step i of N     min_lr * (max_lr / min_lr) ** (i / (N - 1))   (min_lr at 0, max_lr at N - 1)
  smoothed loss         avg = beta * avg + (1 - beta) * loss;  smoothed = avg / (1 - beta ** (i + 1))
  stop early            a non-finite loss, or smoothed > diverge * (best smoothed so far)
  min-loss lr           lr of the least smoothed loss, after skipping the first SKIP_BEGIN and the last
                        SKIP_END rows (Lightning's window); fastai suggests it / 10
  suggested lr          steepest descent: argmin of the central-difference slope of the smoothed loss
                        against ln(lr) over that window up to the min-loss row. Lightning searches the whole
                        window; past the minimum the loss has blown up and its noise makes false descents
                        (tiny MNIST, SGD: Lightning's rule picks lr 6.9 after the loss blew up at 0.2).
The run writes only its own new directory: no checkpoint, and no other run is read or changed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from lrdecay_cli.config.spec import Spec
from lrdecay_cli.config.spec_file import from_data, load
from lrdecay_cli.errors import UserError
from lrdecay_cli.output.plot import find_lr_png
from lrdecay_cli.rundir.csvfile import to_csv
from lrdecay_cli.rundir.fs import check_output_file, check_writable, write_atomic
from lrdecay_cli.rundir.layout import FIND_LR, Status
from lrdecay_cli.rundir.record import RunDir, now_utc, opening_summary, provenance
from lrdecay_cli.training.device import device_name, resolve_device
from lrdecay_cli.training.trainer import SingleTrainer

SKIP_BEGIN, SKIP_END = 10, 1
"""Lightning's `suggestion(skip_begin=10, skip_end=1)`: the first rows are too naive, the last too optimistic."""
MIN_STEPS = 20
"""Leaves at least 9 rows for the suggestion after the skipped ones."""
MAX_STEPS = 100_000
"""fastai and Lightning take 100 steps; 100,000 (over a hundred epochs of MNIST) is hours: more is a slip."""
RULE = ("exponential LR from min_lr to max_lr; EMA smoothing with bias correction and divergence stop as fastai "
        "LRFinder / Lightning _LRCallback; suggestion = steepest slope of the smoothed loss against ln(lr) "
        f"skipping the first {SKIP_BEGIN} and last {SKIP_END} rows (Lightning), up to the min-loss row; "
        "min-loss lr and min/10 as fastai")


@dataclass(frozen=True)
class Settings:
    """The test's options, validated on construction (each error names its command-line option)."""

    min_lr: float = 1e-7
    max_lr: float = 10.0
    steps: int = 100
    smoothing: float = 0.98
    diverge: float = 4.0

    def __post_init__(self):
        if not (math.isfinite(self.min_lr) and self.min_lr > 0):
            raise UserError(f"{self.min_lr} is not a positive number", where="--min-lr", fix="use e.g. 1e-7")
        if not (math.isfinite(self.max_lr) and self.max_lr > self.min_lr):
            raise UserError(f"{self.max_lr} is not above --min-lr {self.min_lr}", where="--max-lr",
                            fix="use a finite value larger than --min-lr, e.g. 10")
        if self.steps < MIN_STEPS:
            raise UserError(f"{self.steps} steps are too few", where="--steps",
                            fix=f"use at least {MIN_STEPS} (the suggestion skips the first {SKIP_BEGIN} and the last {SKIP_END})")
        if self.steps > MAX_STEPS:
            raise UserError(f"{self.steps:,} steps are too many", where="--steps",
                            fix=f"use at most {MAX_STEPS:,} (fastai and Lightning take 100)")
        if not 0 <= self.smoothing < 1:
            raise UserError(f"{self.smoothing} is outside [0, 1)", where="--smoothing",
                            fix="use e.g. 0.98 (0 turns smoothing off)")
        if not (math.isfinite(self.diverge) and self.diverge > 1):
            raise UserError(f"{self.diverge} is not a finite number above 1", where="--diverge",
                            fix="use e.g. 4 (stop when the smoothed loss is 4x its best)")

    def lr_at(self, step: int) -> float:
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.steps - 1))


@dataclass
class Row:
    step: int
    lr: float
    loss: float
    smoothed_loss: float


def suggest(rows: list[Row]) -> dict:
    """The suggested LR (steepest descent) and the min-loss LR, from the rows a test recorded."""
    found = dict.fromkeys(("suggested_lr", "suggested_step", "min_loss_lr", "min_loss_lr_div10", "min_loss_step",
                           "min_smoothed_loss"))
    window = [r for r in rows[SKIP_BEGIN:len(rows) - SKIP_END] if math.isfinite(r.smoothed_loss)]
    if not window:
        return found
    lowest = min(window, key=lambda r: r.smoothed_loss)
    found.update(min_loss_lr=lowest.lr, min_loss_lr_div10=lowest.lr / 10, min_loss_step=lowest.step,
                 min_smoothed_loss=lowest.smoothed_loss)
    window = window[:window.index(lowest) + 1]
    if len(window) < 2:
        return found
    x = [math.log(r.lr) for r in window]
    y = [r.smoothed_loss for r in window]
    last = len(window) - 1
    # torch.gradient / np.gradient at unit edge order: one-sided at the ends, central inside.
    slopes = [(y[min(i + 1, last)] - y[max(i - 1, 0)]) / (x[min(i + 1, last)] - x[max(i - 1, 0)])
              for i in range(len(window))]
    steep = window[min(range(len(window)), key=slopes.__getitem__)]
    return {**found, "suggested_lr": steep.lr, "suggested_step": steep.step}


@dataclass
class FindLrResult:
    path: Path
    summary: dict
    rows: list[Row]


def check_spec_out(path: Path, force: bool) -> None:
    """Refuse, before the test runs, a --write target that exists (without --force) or cannot be made."""
    if path.is_dir():
        raise UserError("is a directory", where=f"--write {path}", fix="name a YAML file")
    if path.exists() and not force:
        raise UserError("the file exists", where=f"--write {path}", fix="choose another name, or pass --force to replace it")
    if not path.absolute().parent.is_dir():
        raise UserError("its directory does not exist", where=f"--write {path}", fix="name a file in an existing directory")
    check_output_file(path, f"--write {path}")


def spec_with_lr(spec: Spec, lr: float) -> Spec:
    """`spec` with `optimizer.lr = lr`, validated like any spec (a schedule may bound its LR)."""
    data = spec.model_dump(mode="json")
    data["optimizer"]["lr"] = lr
    return from_data(data, f"the spec with optimizer.lr={lr!r}")


def write_spec(path: Path, spec: Spec) -> None:
    """Write `spec` as YAML atomically and load it back, so what is on disk is known to be a valid spec."""
    write_atomic(path, spec.dump())
    if load(path) != spec:
        raise RuntimeError(f"{path} does not load back as the spec that was written")


def find_lr(spec: Spec, settings: Settings, runs_dir: Path, spec_out: Path | None = None,
            force: bool = False, on_step: Callable[[int, float, float], None] | None = None) -> FindLrResult:
    """Run the test into `<runs_dir>/<UTC time>-<name>-find-lr/`; user errors come before it exists. The spec's
    schedule is ignored (the test sets every step's LR); all else is used exactly as `train` would."""
    if spec_out is not None:
        check_spec_out(spec_out, force)
    resolve_device(spec.train.device)
    check_writable(runs_dir)
    trainer = SingleTrainer([spec])
    run = RunDir.create(runs_dir, f"{spec.name}-find-lr")
    summary = opening_summary(
        spec, provenance(str(trainer.device), device_name(trainer.device), torch.__version__, torch.get_num_threads()),
        optimizer=spec.optimizer.name, spec_lr=spec.optimizer.lr, schedule_ignored=spec.schedule.name,
        settings={**asdict(settings), "skip_begin": SKIP_BEGIN, "skip_end": SKIP_END}, rule=RULE,
        steps_requested=settings.steps, steps_run=0, stopped_early=False, stop_reason=None, suggested_lr=None,
        spec_written=None, steps_per_epoch=trainer.steps_per_epoch, train_size=trainer.sizes[0])
    run.write_config(spec.dump())
    run.write_summary(summary)
    start = time.perf_counter()
    try:
        rows, stop_reason = _range_test(trainer, settings, on_step or (lambda step, lr, smoothed: None))
    except BaseException as exc:
        status = Status.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else Status.FAILED
        summary.update(status=status, message=f"{type(exc).__name__}: {exc}", finished_at=now_utc())
        run.write_summary(summary)
        raise
    found = suggest(rows)
    summary.update(found, steps_run=len(rows), stopped_early=stop_reason is not None, stop_reason=stop_reason,
                   epochs_of_data=len(rows) / trainer.steps_per_epoch)
    write_atomic(run.path / FIND_LR, to_csv([asdict(r) for r in rows]))
    find_lr_png([r.lr for r in rows], [r.loss for r in rows], [r.smoothed_loss for r in rows],
                found["suggested_lr"], found["min_loss_lr"], run.path / "find_lr.png",
                f"{spec.name}: LR range test ({spec.optimizer.name}, {len(rows)} steps)")
    if found["suggested_lr"] is None:
        summary["message"] = (f"no suggestion: the smoothed loss did not fall between step {SKIP_BEGIN} and step "
                              f"{len(rows) - 1 - SKIP_END} of {len(rows)}; lower --min-lr, or raise --max-lr or --steps")
    elif spec_out is not None:
        write_spec(spec_out, spec_with_lr(spec, found["suggested_lr"]))
        summary["spec_written"] = str(spec_out)
    summary.update(status=Status.COMPLETED, wall_seconds=time.perf_counter() - start, finished_at=now_utc())
    run.write_summary(summary)
    return FindLrResult(run.path, summary, rows)


def _range_test(trainer: SingleTrainer, settings: Settings, on_step: Callable[[int, float, float], None]
                ) -> tuple[list[Row], str | None]:
    """The loop: one optimizer step per LR, over as many epochs of batches as `settings.steps` needs."""
    beta, rows, avg, best = settings.smoothing, [], 0.0, math.inf
    trainer.train_mode(True)
    for _ in range(math.ceil(settings.steps / trainer.steps_per_epoch)):  # bounded, whatever the batches do
        for xb, yb in trainer.batches:
            step = len(rows)
            lr = settings.lr_at(step)
            value = trainer.step(xb, yb, [lr])[0].item()
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta ** (step + 1))
            rows.append(Row(step, trainer.lrs_held()[0], value, smoothed))
            on_step(step, lr, smoothed)
            if not math.isfinite(smoothed):
                return rows, f"the loss became {value} at step {step} (lr {lr:.4g})"
            best = min(best, smoothed)
            if smoothed > settings.diverge * best:
                return rows, (f"the smoothed loss {smoothed:.4g} passed {settings.diverge:g} x its best "
                              f"{best:.4g} at step {step} (lr {lr:.4g})")
            if len(rows) == settings.steps:
                return rows, None
    return rows, None
