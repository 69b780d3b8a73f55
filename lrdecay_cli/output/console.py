"""Everything lrdecay prints (the only module that does): result tables, notes, warnings and errors, and live
progress on stderr (plain lines where stderr is no terminal)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import NamedTuple

from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lrdecay_cli.analysis.compare import METRICS
from lrdecay_cli.analysis.grouping import show_value
from lrdecay_cli.config.choices import CompareMetric
from lrdecay_cli.rundir.csvfile import to_csv
from lrdecay_cli.rundir.layout import FINISHED

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def _wide() -> Console:
    """stdout; when it is not a terminal (a pipe, a file) wide enough that tables are not squeezed to 80."""
    return stdout if stdout.is_terminal else Console(highlight=False, width=200)


def error(line: str) -> None:
    """One plain line on stderr (no markup, no wrapping), the form every user error takes."""
    sys.stderr.write(f"error: {line}\n")


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def percent(value: float | None) -> str:
    """An accuracy (a fraction) as lrdecay shows it on screen and in pages: 97.12%; "-" for none."""
    return "-" if value is None else f"{100 * value:.2f}%"


def loss_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class TrainProgress:
    """What is loading, at once (torch and the data take seconds); then a bar for the run and one per epoch."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console,
        )
        self.task = self.run = None
        self.loading = console.status("loading torch, MNIST and the model", spinner="dots") if console.is_terminal else None
        if self.loading:
            self.loading.start()

    def on_start(self, run_dir: Path, summary: dict) -> None:
        self._loaded()
        self.console.print(f"run [bold]{escape(str(run_dir))}[/] on {summary['device_name']}: "
                           f"{summary['train_size']} train / {summary['val_size']} val images, "
                           f"{summary['steps_per_epoch']} steps per epoch", soft_wrap=True)
        steps = summary["epochs"] * summary["steps_per_epoch"]
        self.run = self.progress.add_task("run", total=steps, completed=summary["steps"], status="")
        self.first_epoch = summary["epochs_completed"]
        if self.console.is_terminal:  # elsewhere (a log file) one plain line per epoch: no bar to cut short
            self.progress.start()

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, status="")
        self.epoch_start = self.progress.tasks[self.run].completed

    def on_progress(self, steps_done: int, loss: float, lr: float) -> None:
        self.progress.update(self.task, completed=steps_done, status=f"loss {loss:.4f}  lr {lr:.4g}")
        self.progress.update(self.run, completed=self.epoch_start + steps_done)

    def on_epoch_end(self, row: dict) -> None:
        status = (f"loss {loss_text(row['train_loss'])}  acc {percent(row['train_acc'])}  "
                  f"val_loss {loss_text(row['val_loss'])}  val_acc {percent(row['val_acc'])}  lr {row['lr']:.4g}")
        self.progress.update(self.task, status=status)
        if not self.console.is_terminal:
            run = self.progress.tasks[self.run]
            done = row["epoch"] - self.first_epoch
            epochs = round(run.total / self.progress.tasks[self.task].total)
            eta = (run.elapsed or 0) / max(done, 1) * (epochs - row["epoch"])
            self.console.print(f"epoch {row['epoch']}/{epochs}: {status}  ({row['seconds']:.1f} s, eta {eta:.0f} s)",
                               soft_wrap=True, markup=False)

    def on_finish(self, summary: dict) -> None:
        self.stop()

    def _loaded(self) -> None:
        if self.loading:
            self.loading.stop()
            self.loading = None

    def stop(self) -> None:
        self._loaded()
        if self.progress.live.is_started:  # a bar never started must not print (a blank line before an error)
            self.progress.stop()


class SweepProgress:
    """Live sweep display: trials done / running / failed, the best so far and the time remaining; where
    stderr is no terminal (a log file), one plain line per finished trial instead of a bar."""

    def __init__(self, total: int, metric, console: Console = stderr, title: str = "trials"):
        self.metric, self.console, self.title, self.total = metric, console, title, total
        self.done = self.failed = 0
        self.running: list[str] = []
        self.epoch: tuple[int, int] | None = None
        self.trained = 0.0  # the fraction of its training the stack in training has done
        self.observer = StackEpochs(self)
        self.best: tuple[float, str] | None = None
        self.progress = Progress(TextColumn(escape(title)), BarColumn(), TextColumn(f"{{task.fields[finished]}}/{total}"),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task("sweep", total=total, status="", finished=0)
        if console.is_terminal:
            self.progress.start()

    def _refresh(self) -> None:
        names = ", ".join(self.running[:3]) + (f" (+{len(self.running) - 3})" if len(self.running) > 3 else "")
        if names and self.epoch:
            names += f" at epoch {self.epoch[0]}/{self.epoch[1]}"
        under_way = len(self.running) * self.trained if self.epoch else 0.0  # an ETA that moves while a stack trains
        best = f"best {self.metric.name} {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        self.progress.update(self.task, completed=self.done + self.failed + under_way, finished=self.done + self.failed,
                             status=", ".join(filter(None, [f"running {names or '-'}", f"failed {self.failed}", best])))

    def on_start(self, trial) -> None:
        self.running.append(trial.dirname)
        self._refresh()

    def on_done(self, trial, summary: dict) -> None:
        if trial.dirname in self.running:
            self.running.remove(trial.dirname)
        if not self.running:
            self.epoch = None
        if summary.get("status") in FINISHED:
            self.done += 1
        else:
            self.failed += 1
        value = summary.get(self.metric.summary_field)
        if value is not None and (self.best is None or self.metric.best([value, self.best[0]]) != self.best[0]):
            self.best = (value, trial.dirname)
        self._refresh()
        if not self.console.is_terminal:
            finished = self.done + self.failed
            eta = (self.progress.tasks[self.task].elapsed or 0) / finished * (self.total - finished)
            shown = "-" if value is None else f"{value:.4f}"
            label = ", ".join(f"{k}={v}" for k, v in trial.fields.items())
            leader = f"leader {self.best[1]} {self.best[0]:.4f}; " if self.best else ""
            self.console.print(f"{self.title} {finished}/{self.total}: {trial.dirname} {summary.get('status')}, "
                               f"{self.metric.value_name} {shown} ({label}); {leader}eta {eta:.0f} s",
                               soft_wrap=True, markup=False, highlight=False)

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


class StackEpochs:
    """The TrainObserver of a sweep's display (an executor training in this process): the stack's epoch and progress."""

    def __init__(self, progress: SweepProgress):
        self.progress = progress
        self.steps = 1

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.progress.epoch, self.steps = (epoch, epochs), steps
        self.on_progress(0, 0.0, 0.0)

    def on_progress(self, steps_done: int, loss: float, lr: float) -> None:
        epoch, epochs = self.progress.epoch
        self.progress.trained = (epoch - 1 + steps_done / self.steps) / epochs
        self.progress._refresh()

    def on_start(self, run_dir, summary) -> None: ...
    def on_epoch_end(self, row: dict) -> None: ...
    def on_finish(self, summary: dict) -> None: ...


def stage_progress(selection_metric):
    """A study's display: one SweepProgress per stage (`stage`, its pending trials)."""
    def start(stage: str, todo: list) -> SweepProgress:
        metric = (dataclasses.replace(METRICS[selection_metric.compare_metric], summary_field=selection_metric.value)
                  if stage.startswith("tune") else METRICS[CompareMetric.TEST_ACC])
        return SweepProgress(len(todo), metric, title=f"{stage} stage")

    return start


class FindLrProgress:
    """`lrdecay find-lr`: one bar over the test's steps, with the LR and the smoothed loss; it appears at
    the first step, so an error found before (data, --write target) stays the only line."""

    def __init__(self, steps: int, console: Console = stderr):
        self.progress = Progress(TextColumn("LR range test"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("find-lr", total=steps, status="")

    def on_step(self, step: int, lr: float, smoothed_loss: float) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        self.progress.update(self.task, completed=step + 1, status=f"lr {lr:.3g}  smoothed loss {smoothed_loss:.4f}")

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def summary_table(run_dir: Path, summary: dict) -> None:
    """The result of one run, on stdout."""
    table = Table(title=f"{summary['name']}: {summary['status']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("run directory", str(run_dir)),
        ("epochs", f"{summary['epochs_completed']}/{summary['epochs']} ({summary['steps']} steps)"),
        ("test accuracy", percent(summary["test_acc"])),
        ("test loss", loss_text(summary["test_loss"])),
        ("best val accuracy", "-" if summary["best_val_acc"] is None
         else f"{percent(summary['best_val_acc'])} (epoch {summary['best_epoch']})"),
        ("final val accuracy", percent(summary["final_val_acc"])),
        ("final train loss", loss_text(summary["final_train_loss"])),
        ("wall time", f"{summary['wall_seconds']:.1f} s on {summary['device_name']}"),
    ]
    if summary.get("message"):
        rows.append(("message", summary["message"]))
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)


def data_ready(raw_dir: Path) -> None:
    stdout.print(f"MNIST verified at {raw_dir}")


def note(line: str) -> None:
    """A remark for the reader on stderr, so that stdout stays machine-readable."""
    sys.stderr.write(f"note: {line}\n")


def warning(line: str) -> None:
    """Something that will happen as written but is likely not what was meant, on stderr."""
    sys.stderr.write(f"warning: {line}\n")


def schedules_table(methods) -> None:
    """`lrdecay schedules`: every method of the registry."""
    table = Table(title="Decay methods (t counts steps or epochs from 0; lr is optimizer.lr)", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    for column in ("formula", "parameters (defaults)", "interval", "origin"):
        table.add_column(column)
    for method in methods.values():
        params = ", ".join(k if v is PydanticUndefined else f"{k}={v!r}" for k, v in method.parameters().items())
        interval = method.params.model_fields["interval"].default
        table.add_row(*map(escape, (method.name, method.formula, params or "-", interval, method.origin)))
    wide = _wide()
    wide.print(table)
    wide.print("Every method also takes interval: step | epoch, and warmup: {steps | epochs, shape: "
                 "linear | exponential, start_factor}.", markup=False)


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}


def _limit(constraint) -> str:
    """annotated_types' Ge(ge=1) as '>= 1'."""
    for attr, symbol in _BOUNDS.items():
        if hasattr(constraint, attr):
            return f"{symbol} {getattr(constraint, attr)}"
    return str(constraint)


def method_table(method) -> None:
    """`lrdecay schedules NAME`: one method's parameters, defaults and meaning."""
    table = Table(title=f"{method.name}: {method.formula}  ({method.origin})", title_justify="left")
    for column in ("parameter", "default", "meaning"):
        table.add_column(column)
    for key, field in method.params.model_fields.items():
        if key == "name":
            continue
        default = "required" if field.default is PydanticUndefined else repr(field.default)
        limits = ", ".join(_limit(m) for m in field.metadata)
        meaning = " ".join(filter(None, [field.description, f"({limits})" if limits else ""]))
        table.add_row(*map(escape, (key, default, meaning or "-")))
    _wide().print(table)


def lr_csv(lrs: list[float]) -> None:
    sys.stdout.write("step,lr\n" + "".join(f"{step},{lr!r}\n" for step, lr in enumerate(lrs)))


def lr_json(lrs: list[float]) -> None:
    sys.stdout.write(json.dumps([{"step": step, "lr": lr} for step, lr in enumerate(lrs)]) + "\n")


def lr_terminal_plot(lrs: list[float], width: int = 64, height: int = 14) -> None:
    """The LR curve in characters: one column per bucket of steps, drawn from its min to its max."""
    low, high = min(lrs), max(lrs)
    span = (high - low) or 1.0
    columns = min(width, len(lrs))
    grid = [[" "] * columns for _ in range(height)]
    for c in range(columns):
        bucket = lrs[c * len(lrs) // columns:(c + 1) * len(lrs) // columns] or [lrs[-1]]
        top = round((max(bucket) - low) / span * (height - 1))
        bottom = round((min(bucket) - low) / span * (height - 1))
        for row in range(bottom, top + 1):
            grid[height - 1 - row][c] = "█"
    labels = {0: high, height // 2: (high + low) / 2, height - 1: low}
    lines = [f"{labels[r]:>10.3e} ┤" if r in labels else " " * 10 + " │" for r in range(height)]
    out = [label + "".join(row) for label, row in zip(lines, grid)]
    out.append(" " * 11 + "└" + "─" * columns)
    out.append(" " * 12 + "0" + str(len(lrs) - 1).rjust(columns - 1) + "  step")
    sys.stdout.write("\n".join(out) + "\n")


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_table(trials, keys: list[str], title: str) -> None:
    """`lrdecay sweep --dry-run`: the trials, what tells them apart (`keys`), and each one's resolved schedule."""
    table = Table(title=title, title_justify="left")
    for column in ("trial", *keys, "schedule (resolved)"):
        table.add_column(column, overflow="fold")
    for trial in trials:
        table.add_row(trial.dirname, *(escape(_cell(trial.fields.get(k))) for k in keys),
                      escape(resolved_schedule(trial.spec.schedule)))
    _wide().print(table)


def resolved_schedule(params) -> str:
    """`exponential(decay_steps=860, decay_rate=0.5, staircase=False, interval=step)`: every parameter shown."""
    fields = params.model_dump(mode="json", exclude={"name"}, exclude_none=True)
    return f"{params.name}({', '.join(f'{k}={show_value(v)}' for k, v in fields.items())})"


def study_preview(study, rows) -> None:
    """`lrdecay study --dry-run`: each method's LR / initial LR at points of each budget's run; both stages' work."""
    spec = study.spec
    table = Table(title=f"study {spec.name}: the LR / initial LR at points of each run", title_justify="left")
    for header in ("method", "budget", "steps", *(f"{100 * at:.0f}%" for at in rows[0].at)):
        table.add_column(header, justify="left" if header == "method" else "right")
    for row in rows:
        table.add_row(escape(row.label + (" *" if row.metric_driven else "")), f"{row.budget} ep", str(row.steps),
                      *(f"{f:.4g}" for f in row.factors))
    wide = _wide()
    wide.print(table)
    if any(row.metric_driven for row in rows):
        wide.print("* metric-driven: shown as it starts; it cuts the LR as the validation metric stalls", markup=False)
    lrs, budgets = spec.lr_list(), spec.budgets
    settings = sum(len(m.settings()) for m in spec.methods)
    tune_trials = spec.cells() * spec.tune_seeds
    final_trials = len(spec.methods) * len(budgets) * spec.seeds
    epochs = sum(budgets) * len(spec.methods)
    methods = f"{len(spec.methods)} methods" if settings == len(spec.methods) else \
        f"{len(spec.methods)} methods in {settings} settings of their tuned parameters"
    wide.print(f"tuning: {tune_trials} trials ({methods} x {len(budgets)} budgets x {len(lrs)} LRs "
               f"[{', '.join(f'{lr:g}' for lr in lrs)}] x {spec.tune_seeds} seed{'s' * (spec.tune_seeds > 1)}), "
               f"{sum(budgets) * settings * len(lrs) * spec.tune_seeds} model-epochs; chosen by validation "
               f"{spec.metric.value}", markup=False)
    wide.print(f"final: {final_trials} trials (each method x budget at its chosen LR x {spec.seeds} seeds "
               f"{spec.final_seed_list()}), {epochs * spec.seeds} model-epochs, evaluated on the test set", markup=False)
    if spec.max_extensions and (steps := spec.edge_steps()):
        wide.print(f"then, before the final stage: a method x budget whose chosen LR is the smallest or largest tried "
                   f"is tuned again one grid step beyond it (x{1 / steps[0]:.3g} below, x{steps[1]:.3g} above), up to "
                   f"{spec.max_extensions} time{'s' * (spec.max_extensions != 1)} per side: extension rounds may "
                   f"follow (tune-1/, ...; {spec.tune_seeds} trial{'s' * (spec.tune_seeds != 1)} per such method x budget "
                   f"each)",
                   markup=False)
    for row in rows:
        if row.warning:
            warning(f"{row.label} at {row.budget} epochs: {row.warning}")


def study_table(study, rows: list[dict], report_path) -> None:
    """The study's result: per budget, the methods by rank, and where the report is."""
    table = Table(title=f"study {study.spec.name}: test accuracy at the chosen initial LR", title_justify="left")
    for header in ("budget", "rank", "method", "lr", "test acc", "95% CI", "n"):
        table.add_column(header, justify="left" if header == "method" else "right")
    for row in sorted(rows, key=lambda r: (r["budget_epochs"], r["rank"] or 1e9)):
        ci = "-" if row["ci_low"] is None else f"{100 * row['ci_low']:.2f}..{100 * row['ci_high']:.2f}%"
        table.add_row(f"{row['budget_epochs']} ep", str(row["rank"] or "-"), escape(row["method"]),
                      "-" if row["lr"] is None else f"{row['lr']:g}", percent(row["test_acc_mean"]), ci, str(row["n"]))
    _wide().print(table)
    if report_path:
        _wide().print(f"report: {report_path}", markup=False)


def files_written(paths: list[Path]) -> None:
    """The files a command wrote, one path a line on stdout (for scripts: `lrdecay plot RUN | xargs ...`)."""
    for path in paths:
        sys.stdout.write(f"{path}\n")


COMPARE_KEEP = {"95% CI": 6, "n": 8, "vs best": 7, "epochs": 2, "seconds": 1, "left out": 4}
"""How much each of compare's columns is worth keeping at 80 columns (Column.keep); names and metric 10, others 3."""


def compare_table(view, console: Console | None = None) -> None:
    """`lrdecay compare`: the groups best first, and under the table what the numbers mean; at 80 columns
    the least needed columns go (said under it), no number is cut."""
    console = console or _wide()
    metric_column = next(i for i, (_, right) in enumerate(view.columns) if right)
    columns = []
    for i, (header, right) in enumerate(view.columns):
        keep = 10 if i <= metric_column else COMPARE_KEEP.get(header, 3)
        wraps = not right and header != "n"
        columns.append(Column(header, right, 12 if wraps else None, keep, 0 if header == "vs best" else 1))
    table, dropped = fitted_table(view.title, columns, view.rows, console)
    console.print(table)
    for line in view.notes:
        console.print(line, markup=False)
    if dropped:
        console.print(f"Left out to fit {console.width} columns: {', '.join(dropped)} (a wider terminal, "
                      f"--csv or --markdown shows them).", markup=False)


def compare_markdown(view) -> None:
    """`lrdecay compare --markdown`: a pipe table and a paragraph under it, ready for a README."""
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"

    rule = "|" + "|".join("---:" if right else "---" for _, right in view.columns) + "|\n"
    table = line([h for h, _ in view.columns]) + rule + "".join(line(row) for row in view.rows)
    sys.stdout.write(table + "\n" + " ".join(view.notes) + "\n")


def compare_csv(rows: list[dict]) -> None:
    """`lrdecay compare --csv`: one row per group, floats at full precision, empty cells for none."""
    sys.stdout.write(to_csv(rows))


class Column(NamedTuple):
    header: str
    right: bool = False
    narrowest: int | None = None
    """How narrow it may wrap; None: never narrower than its widest cell (numbers, times), so never cut."""
    keep: int = 5
    """Where the table does not fit even wrapped, the columns of the lowest `keep` go first."""
    wrap: int = 0
    """Which text columns wrap first where the table is too wide: the lowest."""


def fitted_table(title: str, columns: list[Column], cells: list[list[str]], console: Console) -> tuple[Table, list[str]]:
    """A table as wide as `console` allows with every number whole (80 columns, a log file): text columns
    wrap, and where that is not enough the least kept columns go. Returns it and the headers left out."""
    natural = [max([len(column.header) if column.narrowest else max(map(len, column.header.split()))]
                   + [len(c[i]) for c in cells]) for i, column in enumerate(columns)]
    narrowest = [natural[i] if column.narrowest is None else min(natural[i], column.narrowest)
                 for i, column in enumerate(columns)]
    shown = list(range(len(columns)))

    def room() -> int:  # the width left to the cells once borders and padding (3 a column, 1 more) are drawn
        return console.width - 3 * len(shown) - 1

    while len(shown) > 1 and sum(narrowest[i] for i in shown) > room():
        shown.remove(min(shown, key=lambda i: columns[i].keep))
    widths = {i: natural[i] for i in shown}
    for i in sorted((i for i in shown if columns[i].narrowest is not None), key=lambda i: columns[i].wrap):
        widths[i] -= min(widths[i] - narrowest[i], max(0, sum(widths.values()) - room()))
    table = Table(title=title, title_justify="left")
    for i in shown:
        table.add_column(columns[i].header, justify="right" if columns[i].right else "left", width=widths[i],
                         overflow="fold")  # a number's column is as wide as its widest cell: only its header wraps
    for row in cells:
        table.add_row(*(escape(row[i]) for i in shown))
    return table, [columns[i].header for i in range(len(columns)) if i not in shown]


RUNS_COLUMNS = (Column("name", False, 10, 5, 2), Column("kind", False, None, 3),
                Column("status", False, 12, 8, 0), Column("schedule", False, 11, 6, 1),
                Column("best val_acc", True, None, 7), Column("test_acc", True, None, 7),
                Column("best trial", False, 8, 2, 3), Column("when (UTC)", False, None, 1),
                Column("directory", False, 20, 9, 4))


def runs_table(rows, title: str, console: Console | None = None) -> None:
    """`lrdecay runs`: one row per run, sweep or study, in the columns that fit (fitted_table)."""
    console = console or _wide()
    cells = [[row.name, str(row.kind), row.status, row.schedule, percent(row.best_val_acc), percent(row.test_acc),
              f"{row.best_trial} by {row.metric}" if row.best_trial else "-",
              row.when.strftime("%Y-%m-%d %H:%M") if row.when else "-", str(row.path)] for row in rows]
    shown = [i for i, column in enumerate(RUNS_COLUMNS)
             if column.header != "best trial" or any(row.best_trial for row in rows)]
    table, _ = fitted_table(title, [RUNS_COLUMNS[i] for i in shown], [[c[i] for i in shown] for c in cells], console)
    console.print(table)
    metrics = sorted({row.metric for row in rows if row.metric})
    if metrics:
        console.print(f"A sweep's or study's accuracies are those of its best completed trial by the sweep's metric "
                      f"({', '.join(metrics)}).", markup=False)


def runs_csv(rows: list[dict]) -> None:
    """`lrdecay runs --format csv`: one row per directory, accuracies as fractions at full precision."""
    sys.stdout.write(to_csv(rows))


def find_lr_result(run_dir: Path, summary: dict) -> None:
    """The result of `lrdecay find-lr`, on stdout."""
    def lr(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    table = Table(title=f"{summary['name']}: LR range test ({summary['optimizer']})", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    steps = f"{summary['steps_run']} of {summary['steps_requested']}"
    rows = [
        ("suggested lr", f"{lr(summary['suggested_lr'])} (steepest descent of the smoothed loss)"),
        ("min-loss lr", f"{lr(summary['min_loss_lr'])} (its tenth: {lr(summary['min_loss_lr_div10'])})"),
        ("steps", f"{steps}, stopped early: {summary['stop_reason']}" if summary["stopped_early"] else steps),
        ("written to", str(run_dir)),
    ]
    if summary.get("spec_written"):
        rows.append(("spec with the suggested lr", summary["spec_written"]))
    if summary.get("message"):
        rows.append(("message", summary["message"]))
    for key, value in rows:
        table.add_row(key, escape(value))
    _wide().print(table)
