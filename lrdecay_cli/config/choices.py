"""The closed sets of values that options take. The library checks against these enums and Typer lists
them in `--help` and refuses others, so the two cannot disagree. Imported at start-up: no heavy imports."""

from __future__ import annotations

from enum import StrEnum


class Executor(StrEnum):
    """How a sweep's trials run (executors/)."""

    AUTO = "auto"
    SEQUENTIAL = "sequential"
    VECTORIZED = "vectorized"
    PROCESSES = "processes"
    RAY = "ray"


class PreviewFormat(StrEnum):
    """`lrdecay schedule --format`."""

    CSV = "csv"
    JSON = "json"
    PLOT = "plot"


class FigureFormat(StrEnum):
    """The file formats of figures (output/plot.py)."""

    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


class Band(StrEnum):
    """The spread drawn around a seed group's mean line (output/plot.py)."""

    MINMAX = "minmax"
    STD = "std"
    NONE = "none"


class XUnit(StrEnum):
    """The x axis of `lrdecay plot`'s panels (plot.X_UNITS)."""

    EPOCH = "epoch"
    STEP = "step"


class CompareMetric(StrEnum):
    """What `lrdecay compare` ranks by (compare.METRICS)."""

    VAL_ACC = "val_acc"
    VAL_LOSS = "val_loss"
    TEST_ACC = "test_acc"


class SelectionMetric(StrEnum):
    """What picks a method's initial LR in a study's tuning stage: a validation field of summary.json."""

    BEST_VAL_ACC = "best_val_acc"
    FINAL_VAL_ACC = "final_val_acc"
    BEST_VAL_LOSS = "best_val_loss"
    FINAL_VAL_LOSS = "final_val_loss"

    @property
    def larger_is_better(self) -> bool:
        return self.endswith("_acc")

    @property
    def compare_metric(self) -> CompareMetric:
        """The tuning sweep's leaderboard ranks by the same quantity."""
        return CompareMetric.VAL_ACC if self.larger_is_better else CompareMetric.VAL_LOSS


class ListFormat(StrEnum):
    """`lrdecay runs --format`."""

    TABLE = "table"
    CSV = "csv"
