"""`lrdecay plot`'s figures with matplotlib (headless, no torch): `figures` builds them (their data checkable before
saving), `save` renders all, then writes each atomically; a group of seeds is drawn as a mean line and a band."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from lrdecay_cli.analysis.grouping import group_runs
from lrdecay_cli.config.choices import Band, FigureFormat
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir.fs import check_output_file, write_atomic

FORMATS = tuple(FigureFormat)
BANDS = tuple(Band)
FIGURES = ("lr", "loss", "accuracy", "overview")
"""The files `lrdecay plot` writes: <name>.<format>, in this order."""

DPI = 100
SIZE = (9.0, 4.5)
OVERVIEW_SIZE = (9.0, 10.0)
"""Inches; PNGs are 900x450 and 900x1000 pixels."""

INSIDE_LEGEND_MAX = 3
"""More groups than this and their legend goes outside the axes, to the right, clear of the data."""

METADATA = {"png": {"Software": None},
            "svg": {"Date": None, "Creator": None},
            "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}
"""No dates and no version strings in the files: the same runs give byte-identical figures."""

LEGEND_PLACE = {"lr": "lower left", "step_loss": "upper right", "train_loss": "upper right", "train_acc": "lower right"}
"""Fixed legend corners where decaying LR, falling loss and rising accuracy leave room (matplotlib's
"best" costs most of the 3 s budget on a 30-run sweep)."""

COLUMN_STYLE = {"lr": ("-", "learning rate"), "step_loss": ("-", "train, per step"), "train_loss": ("--", "train"),
                "val_loss": ("-", "val"), "train_acc": ("--", "train"), "val_acc": ("-", "val")}
"""Line style and legend word of each plotted column; the colour says the group."""
STEP_LOSS_LINE = {"linewidth": 0.7, "alpha": 0.4}
"""The per-step training loss (lr.csv's loss): thin and faint, under the epochs' curves it scatters around."""

LOSS, ACCURACY = ("step_loss", "train_loss", "val_loss"), ("train_acc", "val_acc")
EPOCH_COLUMNS = ("train_loss", "val_loss", "train_acc", "val_acc")
"""The columns of metrics.csv that the figures draw (one point per finished epoch)."""


@dataclass
class Series:
    """One group's curve of one column: x, the mean over its runs, and the band (None for one run)."""

    label: str
    x: "numpy.ndarray"
    y: "numpy.ndarray"
    low: "numpy.ndarray | None" = None
    high: "numpy.ndarray | None" = None


@dataclass
class Plots:
    """The figures by name (FIGURES order) and notes for the reader (empty figures and why)."""

    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _steps_per_epoch(run) -> int | None:
    """From summary.json; else from a metrics row (step / epoch); else unknown."""
    if run.steps_per_epoch:
        return run.steps_per_epoch
    for row in run.epoch_rows:
        if row["epoch"]:
            return row["step"] // row["epoch"]
    return None


def _points(run, column: str, unit: str):
    """(x, y) arrays of one run's column, empty cells left out: LR per step, metrics per evaluation (at its step);
    x in epochs (a step at step / steps_per_epoch) or in optimizer steps. `step_loss` is lr.csv's loss of each
    step, at the steps done once it is known (step + 1, where metrics.csv's `step` puts an epoch's end), finite
    ones only (a diverged step's is marked on the LR); none for a run written before lr.csv had the loss."""
    import math

    import numpy as np

    if column in ("lr", "step_loss"):
        spe = _steps_per_epoch(run) if unit == "epoch" else 1
        rows = run.lr if spe else []
        if column == "lr":
            x = [row["step"] / spe for row in rows if row["lr"] is not None]
            y = [row["lr"] for row in rows if row["lr"] is not None]
        else:
            kept = [row for row in rows if row["loss"] is not None and math.isfinite(row["loss"])]
            x = [(row["step"] + 1) / spe for row in kept]
            y = [row["loss"] for row in kept]
    else:  # val_*: every evaluation (train.evals_per_epoch); train_*, over an epoch's steps: at each epoch's end
        rows = [row for row in (run.epoch_rows if column.startswith("train_") else run.metrics)
                if row[column] is not None]
        spe = _steps_per_epoch(run)
        x = [row["step"] / spe if unit == "epoch" and spe else row["epoch"] if unit == "epoch" else row["step"]
             for row in rows]
        y = [row[column] for row in rows]
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def series(group, column: str, unit: str, band: str) -> Series | None:
    """The group's `column` against `unit` (step or epoch): at each x, the mean of the runs that have
    a value there, and their min-max or mean ± sample std; None where no run has a value."""
    import numpy as np

    points = [(x, y) for x, y in (_points(run, column, unit) for run in group.runs) if len(x)]
    if not points:
        return None
    xs = np.unique(np.concatenate([x for x, _ in points]))
    table = np.full((len(points), len(xs)), np.nan)
    for row, (x, y) in zip(table, points):
        row[np.searchsorted(xs, x)] = y
    count = np.sum(~np.isnan(table), axis=0)
    mean = np.nansum(table, axis=0) / count
    result = Series(group.label, xs, mean)
    if len(points) > 1 and band == "minmax":
        result.low, result.high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    elif len(points) > 1 and band == "std":
        spread = np.sqrt(np.nansum((table - mean) ** 2, axis=0) / np.maximum(count - 1, 1))
        result.low, result.high = mean - spread, mean + spread
    return result


def palette(count: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def _panel(ax, groups, colors, columns: tuple[str, ...], unit: str, band: str) -> tuple[tuple[str, ...], bool]:
    """Draw every group's series of `columns` on `ax`: (the columns drawn, any band drawn). A seed group's LR is its
    runs' own thin curves, never a mean (plateau runs cutting at different epochs average to an LR no run used);
    identical curves are drawn once."""
    import numpy as np

    drawn: dict[str, None] = {}
    banded = False
    for group, color in zip(groups, colors):
        for column in columns:
            style, word = COLUMN_STYLE[column]
            label = group.label if len(columns) == 1 else f"{group.label} {word}"
            if column == "lr" and len(group.runs) > 1:
                curves = [xy for xy in (_points(run, "lr", unit) for run in group.runs) if len(xy[0])]
                distinct = list({(x.tobytes(), y.tobytes()): (x, y) for x, y in curves}.values())
                for number, (x, y) in enumerate(distinct):
                    ax.plot(x, y, style, color=color, linewidth=1.5 if len(distinct) == 1 else 0.8,
                            alpha=1.0 if len(distinct) == 1 else 0.75, label=label if number == 0 else None)
                if distinct:
                    drawn[column] = None
                continue
            if column == "step_loss":  # a mean over seeds where several, never a band: steps scatter too much
                curve = series(group, column, unit, "none")
                if curve is not None:
                    ax.plot(curve.x, curve.y, style, color=color, label=label, **STEP_LOSS_LINE)
                    drawn[column] = None
                continue
            curve = series(group, column, unit, band)
            if curve is None:
                continue
            few = len(curve.x) <= 50
            ax.plot(curve.x, curve.y, style, color=color, linewidth=1.5, label=label,
                    marker="o" if few else None, markersize=3.5)
            if curve.low is not None and np.any(curve.high > curve.low):
                ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.18, linewidth=0,
                                label=f"{label} band")
                banded = True
            drawn[column] = None
        if "lr" in columns:
            _mark_divergence(ax, group, color, unit)
    return tuple(drawn), banded


def _mark_divergence(ax, group, color, unit: str) -> None:
    """An X on the LR curve at the step whose loss was not finite (summary.json's diverged.step)."""
    for run in group.runs:
        diverged = run.summary.get("diverged")
        if not isinstance(diverged, dict) or not isinstance(diverged.get("step"), int):
            continue
        step = diverged["step"]
        lr = next((row["lr"] for row in run.lr if row["step"] == step), diverged.get("lr"))
        spe = _steps_per_epoch(run) if unit == "epoch" else 1
        if lr is None or not spe:
            continue
        ax.plot([step / spe], [lr], "X", color=color, markersize=9, markeredgecolor="black",
                label=f"{group.label} diverged")


def _epoch_boundaries(ax, runs, unit: str) -> None:
    """Grey lines at the ends of epochs, only where every run has the same epoch length."""
    lengths = {_steps_per_epoch(run) for run in runs}
    spe = lengths.pop() if len(lengths) == 1 else None
    last = max((run.lr[-1]["step"] for run in runs if run.lr), default=0)
    if spe:
        for boundary in range(spe, last + 1, spe):
            ax.axvline(boundary / spe if unit == "epoch" else boundary, color="0.85", linewidth=0.8, zorder=0)


def _empty(ax, why: str) -> None:
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _legends(fig, panels: list, groups, colors) -> None:
    """One colour per group, said once per figure: inside the first axes for a few groups, outside on the right for
    more; `panels`: (axes, its first column, its style handles)."""
    from matplotlib.lines import Line2D

    named = [Line2D([], [], color=c, linewidth=2, label=g.label) for g, c in zip(groups, colors)] if len(groups) > 1 else []
    outside = len(named) > INSIDE_LEGEND_MAX
    if outside:
        fig.legend(handles=named, loc="outside right upper", fontsize="small")
    for number, (ax, column, handles) in enumerate(panels):
        handles = handles if outside or number else named + handles
        if handles:
            ax.legend(handles=handles, loc=LEGEND_PLACE[column], fontsize="small")


def _subject(runs, groups) -> str:
    """What the figures show, for their titles: a sweep by its name, runs by their specs' names."""
    names = list(dict.fromkeys(run.sweep or str(run.summary.get("name") or run.path.name) for run in runs))
    head = names[0] if len(names) == 1 else f"{len(names)} specs"
    if len(runs) == 1:
        return head
    return f"{head}: {len(runs)} runs" + (f" in {len(groups)} groups" if len(groups) != len(runs) else "")


def _band_word(groups, band: str) -> str | None:
    if band == "none" or all(len(g.runs) < 2 for g in groups):
        return None
    return "min to max over seeds" if band == "minmax" else "mean ± std over seeds"


LOG_AXES = ("lr", "loss")
"""What `--log` may put on a log scale."""
X_UNITS = {"epoch": "epoch", "step": "optimizer step"}
"""The x axis of every panel (`--x`): one unit per figure, and the same in all four."""


def figures(runs, band: str = "minmax", log: frozenset[str] | bool = frozenset(), x: str = "epoch") -> Plots:
    """The four figures of `runs`, not saved, against `x` (epoch: fractional from the steps, or step); `log`: the
    axes ("lr", "loss") on a log scale (True: the LR's)."""
    if band not in BANDS:
        raise UserError(f"unknown band '{band}'", where="--band", fix=f"use one of {', '.join(BANDS)}")
    canvas = _Canvas(runs, band, frozenset({"lr"} if log is True else log or ()), x)
    plots = Plots()
    plots.figures["lr"], has_lr = canvas.lr_figure()
    drawn: set[str] = set()
    for name, columns, ylabel in (("loss", LOSS, "loss (cross-entropy)"), ("accuracy", ACCURACY, "accuracy")):
        plots.figures[name], columns_drawn = canvas.metric_figure(name, columns, ylabel)
        drawn.update(columns_drawn)
    has_metrics = bool(drawn & set(EPOCH_COLUMNS))
    plots.figures["overview"] = canvas.overview()
    if not has_lr and not has_metrics:
        plots.figures.clear()
        plots.notes.append("nothing to plot yet: no run has recorded a step (lr.csv and metrics.csv have no rows)")
        return plots
    if not has_metrics:
        shown = "loss shows only the per-step training loss; " if "step_loss" in drawn else "loss, "
        plots.notes.append(f"{shown}accuracy and the lower panels of overview are empty: no run has finished "
                           "an epoch yet (metrics.csv has no rows)")
    else:
        plots.notes += [f"{run.path} ({group.label}) has no finished epoch yet; it is missing from loss and accuracy"
                        for group in canvas.groups for run in group.runs if not run.metrics]
    if not has_lr:
        plots.notes.append("lr and the top panel of overview are empty: no run has recorded a step (lr.csv has no rows)")
    return plots


class _Canvas:
    """What every panel of one `figures` call shares."""

    def __init__(self, runs, band: str, log: frozenset[str], unit: str):
        self.runs, self.band, self.log, self.unit, self.xlabel = runs, band, log, unit, X_UNITS[unit]
        self.groups = group_runs(runs)
        self.colors = palette(len(self.groups))
        self.subject = _subject(runs, self.groups)
        self.banded = _band_word(self.groups, band)

    def lr_axes(self, ax) -> tuple[tuple[str, ...], bool]:
        drawn, banded_here = _panel(ax, self.groups, self.colors, ("lr",), self.unit, self.band)
        ax.set_ylabel("learning rate")
        if "lr" in self.log and drawn:
            ax.set_yscale("log")
        ax.grid(True, axis="y", alpha=0.3)
        if not drawn:
            _empty(ax, "no steps recorded yet")
        return drawn, banded_here

    def metric_axes(self, ax, columns: tuple[str, ...], ylabel: str) -> tuple[tuple[str, ...], bool]:
        from matplotlib.ticker import MaxNLocator, PercentFormatter

        drawn, banded_here = _panel(ax, self.groups, self.colors, columns, self.unit, self.band)
        ax.set(ylabel=ylabel, xlabel=self.xlabel)
        if self.unit == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if "train_acc" in columns:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        if "train_loss" in columns and "loss" in self.log and drawn:
            ax.set_yscale("log")
        if not drawn:
            _empty(ax, "no finished epoch yet")
        return drawn, banded_here

    def handles(self, columns: tuple[str, ...], drawn: tuple[str, ...], banded_here: bool) -> list:
        """A panel's style entries: which line is which column drawn (train dashed, val solid), and the band's."""
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [Line2D([], [], linestyle=COLUMN_STYLE[c][0], color="0.2", label=COLUMN_STYLE[c][1],
                          **(STEP_LOSS_LINE if c == "step_loss" else {}))
                   for c in columns if len(columns) > 1 and c in drawn]
        if banded_here and self.banded:
            handles.append(Patch(color="0.2", alpha=0.18, label=self.banded))
        return handles

    def lr_figure(self):
        """lr: the LR of every step; and whether any run has recorded one."""
        fig = _new_figure(SIZE)
        ax = fig.add_subplot()
        drawn, banded_here = self.lr_axes(ax)
        ax.set(title=f"Learning rate — {self.subject}", xlabel=self.xlabel)
        if drawn:
            _epoch_boundaries(ax, self.runs, self.unit)
        _legends(fig, [(ax, "lr", self.handles(("lr",), drawn, banded_here))], self.groups, self.colors)
        return fig, bool(drawn)

    def metric_figure(self, name: str, columns: tuple[str, ...], ylabel: str):
        """loss (with the per-step training loss where lr.csv has it) or accuracy, train and val per epoch; and
        the columns drawn."""
        fig = _new_figure(SIZE)
        ax = fig.add_subplot()
        drawn, banded_here = self.metric_axes(ax, columns, ylabel)
        ax.set_title(f"{name.capitalize()} — {self.subject}")
        _legends(fig, [(ax, columns[0], self.handles(columns, drawn, banded_here))], self.groups, self.colors)
        return fig, drawn

    def overview(self):
        """The three panels stacked over one x axis."""
        fig = _new_figure(OVERVIEW_SIZE)
        lr_ax, loss_ax, acc_ax = fig.subplots(3, 1, sharex=True)
        panels = [(lr_ax, "lr", self.handles(("lr",), *self.lr_axes(lr_ax)))]
        for ax, columns, ylabel in ((loss_ax, LOSS, "loss (cross-entropy)"), (acc_ax, ACCURACY, "accuracy")):
            panels.append((ax, columns[0], self.handles(columns, *self.metric_axes(ax, columns, ylabel))))
        lr_ax.set_title(f"Overview — {self.subject}")
        lr_ax.grid(True, axis="x", alpha=0.3)
        lr_ax.set_xlim(left=0)
        loss_ax.set_xlabel("")
        _legends(fig, panels, self.groups, self.colors)
        return fig


def _new_figure(size: tuple[float, float]):
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot state, no backend to select

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work if `out_dir` is a file or lies below one (nothing is created)."""
    probe = out_dir.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == out_dir.absolute() else f"lies below the file {probe}"
        raise UserError(f"the output directory {where}", where=f"--out {out_dir}",
                        fix="pass --out with a directory path (it is created if missing)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"'{probe}' is not writable", where=f"--out {out_dir}",
                        fix="pass --out with a directory you can write to")


def render(fig, fmt: str) -> bytes:
    """The figure as `fmt` bytes, without dates or version strings (byte-identical for the same data)."""
    import matplotlib

    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'", where="--format", fix=f"use one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "lrdecay"}):
        fig.savefig(buffer, format=fmt, metadata=METADATA[fmt])
    return buffer.getvalue()


def save(plots: Plots, out_dir: Path, fmt: str = "png") -> list[Path]:
    """Render every figure, then create `out_dir` and write them (each atomically); the paths written."""
    check_out_dir(out_dir)
    rendered = {out_dir / f"{name}.{fmt}": render(fig, fmt) for name, fig in plots.figures.items()}
    if not rendered:
        return []
    for path in rendered if out_dir.is_dir() else ():  # a FIFO or link where a figure goes: refused, nothing written
        check_output_file(path, f"--out {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, data in rendered.items():
        write_atomic(path, data)
    return list(rendered)


def lr_curve_png(lrs: list[float], path: Path, title: str, epoch_steps: int | None = None) -> None:
    """LR against step, with epoch boundaries marked; written atomically."""
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot state, no backend to select

    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot(range(len(lrs)), lrs, linewidth=1.5)
    if epoch_steps:
        for boundary in range(epoch_steps, len(lrs), epoch_steps):
            ax.axvline(boundary, color="0.85", linewidth=0.8, zorder=0)
    ax.set(title=title, xlabel="optimizer step", ylabel="learning rate")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"))


def find_lr_png(lrs: list[float], losses: list[float], smoothed: list[float], suggested_lr: float | None,
                min_loss_lr: float | None, path: Path, title: str) -> None:
    """`lrdecay find-lr`: loss and smoothed loss against the LR (log axis), the suggestion and the
    min-loss LR marked; the y axis ends at the highest smoothed loss, so a blown-up raw loss cannot flatten it."""
    import math

    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color="0.7", linewidth=0.8, label="loss")
    ax.plot(lrs, smoothed, color="C0", linewidth=1.8, label="smoothed loss")
    at = dict(zip(lrs, smoothed))
    for lr, color, label in ((suggested_lr, "C3", "suggested"), (min_loss_lr, "C2", "min loss")):
        if lr is not None:
            ax.axvline(lr, color=color, linewidth=0.8, linestyle="--", zorder=0)
            ax.plot([lr], [at[lr]], "o", color=color, markersize=7, label=f"{label}: {lr:.3g}")
    finite = [v for v in smoothed if math.isfinite(v)]
    if finite:
        low, high = min(finite + [v for v in losses if math.isfinite(v)]), max(finite)
        pad = 0.1 * (high - low) or 0.1 * abs(high) or 0.1
        ax.set_ylim(low - pad, high + pad)
    ax.set_xscale("log")
    ax.set(title=title, xlabel="learning rate (log scale)", ylabel="training loss")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    write_atomic(path, render(fig, "png"))
