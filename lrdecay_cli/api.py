"""The Python API, for notebooks and scripts: what every `lrdecay` command does, without the printing (the
CLI is built on it). Bad input raises `UserError` (its `.line()` is the CLI's one-line message); a signal
that stops a run before its directory exists raises `Interrupted`. Importing it loads no torch.

    import lrdecay_cli.api as lr

    spec = lr.load_spec("configs/quickstart.yaml", overrides=["train.epochs=2"])
    run = lr.train(spec, runs_dir="runs")                   # .path, .summary (summary.json)
    swept = lr.sweep("configs/quickstart.yaml", grid=["optimizer.lr=0.05,0.1"], seeds="2")
    runs = lr.read_runs([swept.path])                       # .config, .summary, .metrics, .lr per run
    board = lr.compare(runs, metric="val_acc")              # lrdecay compare's groups and statistics
    found = lr.study("configs/studies/decay_methods.yaml")  # .rows (study.csv), .report (report.md)
"""

from __future__ import annotations

from pathlib import Path

from lrdecay_cli.analysis import compare as comparing
from lrdecay_cli.config import spec_file
from lrdecay_cli.config.choices import CompareMetric, FigureFormat
from lrdecay_cli.errors import UserError
from lrdecay_cli.experiments import study as studies
from lrdecay_cli.experiments import sweep as sweeps
from lrdecay_cli.output import plot as plots
from lrdecay_cli.output.page import page
from lrdecay_cli.rundir.fs import check_output_file, write_atomic
from lrdecay_cli.rundir.layout import CONFIG, PAGE, PLOTS
from lrdecay_cli.rundir.read import collect, expand_targets
from lrdecay_cli.schedules import preview as previews


def load_spec(path: str | Path, overrides: list[str] = ()):
    """A validated `config.spec.Spec` from a YAML file and `--set`-style overrides ("train.epochs=2")."""
    return spec_file.load(path, list(overrides))


def check_schedule(spec, source: str = "the spec") -> str | None:
    """Refuse a schedule that does not fit the spec's run; a warning where its LR never changes within the run."""
    spec.check_schedule(source)
    return previews.flat_run_warning(spec)


def train(spec, runs_dir: str | Path = "runs", observer=None, source: str = "the spec"):
    """Train a spec (a `Spec`, or a path to one) into a new run directory; a `training.loop.RunResult`."""
    from lrdecay_cli.training.loop import train as run_training  # torch: only once something trains

    if isinstance(spec, (str, Path)):
        spec, source = load_spec(spec), str(spec)
    return run_training(spec, Path(runs_dir), observer, source=source)


def resume(run_dir: str | Path, spec=None, overrides: list[str] = (), force: bool = False, observer=None):
    """Continue an interrupted run from its last checkpoint (`lrdecay train --resume`). `spec` (a Spec or
    a path) or `overrides` of the run's own config.yaml must leave the run as it is, unless `force`."""
    from lrdecay_cli.training.loop import resume as resume_run

    run_dir = Path(run_dir)
    if isinstance(spec, (str, Path)) or (spec is None and overrides):
        spec = load_spec(spec or run_dir / CONFIG, overrides)
    return resume_run(run_dir, spec, force, observer)


def sweep_plan(path: str | Path | None = None, grid: list[str] = (), seeds: str | None = None,
               overrides: list[str] = (), name: str | None = None, resume: str | Path | None = None) -> sweeps.Plan:
    """A sweep's plan from a file (or a plain spec with `grid` / `seeds`), or from the sweep directory `resume`."""
    if resume is not None:
        if path is not None or grid or seeds or overrides or name:
            raise UserError("--resume takes only the sweep directory", where="--resume",
                            fix="drop SWEEP, --grid, --seeds, --set and --name: the sweep directory holds them")
        return sweeps.reopen(Path(resume))
    if path is None:
        raise UserError("missing SWEEP", fix="name a sweep spec or a spec, e.g. lrdecay sweep configs/sweeps/decay_methods.yaml")
    return sweeps.plan(Path(path), list(grid), seeds, list(overrides), name)


def sweep(path=None, grid: list[str] = (), seeds: str | None = None, overrides: list[str] = (),
          name: str | None = None, runs_dir: str | Path = "runs", executor: str = "auto",
          resume: str | Path | None = None, progress=None, **options) -> sweeps.Outcome:
    """Run a sweep (as `sweep_plan` takes it, or a plan), or go on with the sweep directory `resume`; `progress(todo)`
    makes the display; `options` are the executor's (workers, address, retries, node_ip, force)."""
    plan = path if isinstance(path, sweeps.Plan) else sweep_plan(path, grid, seeds, overrides, name, resume)
    return sweeps.execute(plan, Path(runs_dir), executor, progress, **options)


def study_plan(path: str | Path | None = None, resume: str | Path | None = None) -> studies.Study:
    """A study file's study, or the study directory `resume`'s; `.preview()` is what --dry-run shows."""
    if resume is not None:
        if path is not None:
            raise UserError("--resume takes only the study directory", where="--resume", fix="drop STUDY")
        return studies.reopen(Path(resume))
    if path is None:
        raise UserError("missing STUDY", fix="name a study file, e.g. lrdecay study configs/studies/decay_methods.yaml")
    return studies.load(Path(path))


def study(path=None, runs_dir: str | Path = "runs", executor: str = "vectorized", resume: str | Path | None = None,
          progress=None, **options) -> studies.Outcome:
    """Run a study file (or a `study_plan`), or go on with the study directory `resume`."""
    plan = path if isinstance(path, studies.Study) else study_plan(path, resume)
    return studies.execute(plan, Path(runs_dir), executor, progress, **options)


def read_runs(targets: list[str | Path], on_note=None):
    """The `rundir.read.Run`s of run, sweep and runs directories; `on_note(line)` hears what they expanded to."""
    paths, notes = expand_targets([Path(t) for t in targets])
    for line in notes if on_note else ():
        on_note(line)
    return collect(paths)


def _as_runs(runs, on_note=None):
    """Runs as given, or read from the directories given in their place."""
    return read_runs(runs, on_note) if runs and isinstance(runs[0], (str, Path)) else runs


def compare(runs, metric: str = "val_acc", target: float | None = None, on_note=None) -> comparing.Comparison:
    """`lrdecay compare`'s comparison of runs (or of directories): groups by all but the seed, with statistics."""
    chosen = comparing.METRICS[CompareMetric(metric)]
    comparing.check_target(chosen, target)  # before reading any run directory
    return comparing.compare(_as_runs(runs, on_note), chosen, target)


def figures(runs, band: str = "minmax", log: frozenset[str] = frozenset(), x: str = "epoch") -> plots.Plots:
    """`lrdecay plot`'s matplotlib Figures (.figures by name), for a notebook to show."""
    return plots.figures(_as_runs(runs), band=band, log=log, x=x)


def plot(targets: list[str | Path], out: str | Path | None = None, fmt: str = "png", band: str = "minmax",
         log: str | None = None, x: str = "epoch", on_note=None) -> list[Path]:
    """`lrdecay plot`: the figures of runs, sweeps and runs directories written to `out`; the paths written."""
    targets = [Path(t) for t in targets]
    if out is None and len(targets) > 1:
        raise UserError(f"{len(targets)} targets and no output directory", where="--out",
                        fix="pass --out DIR (one target writes to TARGET/plots by default)")
    out = Path(out) if out is not None else targets[0] / PLOTS
    plots.check_out_dir(out)
    paths, notes = expand_targets(targets)
    for line in notes if on_note else ():
        on_note(line)
    axes = frozenset(a.strip() for a in (log or "").split(",") if a.strip())
    if log is not None and (not axes or not axes <= set(plots.LOG_AXES)):
        raise UserError(f"cannot put '{log}' on a log scale", where="--log", fix="give lr, loss or lr,loss")
    built = plots.figures(collect(paths), band=band, log=axes, x=x)
    for line in built.notes if on_note else ():
        on_note(line)
    return plots.save(built, out, fmt)


def report(targets: list[str | Path], out: str | Path | None = None, metric: str = "val_acc") -> Path:
    """`lrdecay report`: one self-contained HTML page of runs or sweeps, written to `out`; its path."""
    targets = [Path(t) for t in targets]
    if out is None and len(targets) > 1:
        raise UserError(f"{len(targets)} targets and no output file", where="--out",
                        fix="pass --out FILE (one target writes TARGET/report.html by default)")
    out = Path(out) if out is not None else targets[0] / PAGE
    check_output_file(out, "--out")
    runs = collect(targets)
    title = runs[0].sweep if len(targets) == 1 and runs[0].sweep else ", ".join(t.name for t in targets)
    write_atomic(out, page(runs, f"lrdecay report: {title}", CompareMetric(metric)))
    return out


def schedule_preview(spec, steps: int | None = None, png: str | Path | None = None,
                     source: str = "the spec") -> tuple[list[float], list[str], str | None]:
    """`lrdecay schedule`: the LR of steps 0..steps-1 (default: the whole run) exactly as training sets them, notes
    on how to read them, and a warning where the LR never changes; `png`: also a figure."""
    warning = check_schedule(spec, source)
    if png is not None:
        png = Path(png)
        check_output_file(png, f"--png {png}")
        if png.suffix and png.suffix.lstrip(".") not in tuple(FigureFormat):  # no suffix: png
            raise UserError(f"'{png.suffix}' is not a figure format", where=f"--png {png}",
                            fix=f"end the name in .{', .'.join(FigureFormat)}")
    lrs = previews.preview(spec, steps or spec.train.epochs * spec.steps_per_epoch())
    if png is not None:
        method = spec.schedule.name
        plots.lr_curve_png(lrs, png, method if spec.name == method else f"{spec.name}: {method}", spec.steps_per_epoch())
    return lrs, previews.notes(spec), warning


def find_lr(spec, overrides: list[str] = (), runs_dir: str | Path = "runs", write: str | Path | None = None,
            force: bool = False, on_step=None, **settings):
    """`lrdecay find-lr`: the LR range test of a spec (a Spec, or a path with `overrides`), its `settings`
    (min_lr, max_lr, steps, smoothing, diverge) checked first; `write`: also the spec with the suggested LR."""
    from lrdecay_cli.experiments.find_lr import Settings, find_lr as run_test  # torch

    checked = Settings(**settings)
    spec = load_spec(spec, overrides) if isinstance(spec, (str, Path)) else spec
    return run_test(spec, checked, Path(runs_dir), write and Path(write), force, on_step)
