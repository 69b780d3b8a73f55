"""The one ranking, for `lrdecay compare`, a sweep's leaderboard and a study (per budget, `compare_by`): runs grouped
by everything but the seed, their metric summarized over seeds, each group tested against the best: paired over
the seeds both ran (same initial weights and data order), else Welch; Holm-corrected over the groups tested.

Each seed enters with one value, its run's *best* metric (max val_acc or min val_loss over its epochs; test_acc as
measured once); reruns of a seed are averaged into it, so n counts distinct seeds. Only completed runs count; the
others are counted per group and left out.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from lrdecay_cli.analysis.grouping import Group, group_runs, show_value
from lrdecay_cli.analysis.stats import Summary, TTest, holm, paired, summarize, welch
from lrdecay_cli.config.choices import CompareMetric
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir.layout import Status
from lrdecay_cli.rundir.read import Run, summary_number

ALPHA = 0.05
"""Significance level of the test against the best group."""


@dataclass(frozen=True)
class Metric:
    name: str
    larger_is_better: bool
    per_epoch: bool
    """True: a value per epoch in metrics.csv; False: one value in summary.json, after the last epoch."""
    best_means: str
    summary_field: str
    """The field of summary.json that holds a run's best value (what a sweep's progress shows)."""

    @property
    def is_accuracy(self) -> bool:
        return self.name.endswith("_acc")

    @property
    def value_name(self) -> str:
        """What one run contributes: `best val_acc`, or `test_acc` where there is one value only."""
        return f"best {self.name}" if self.per_epoch else self.name

    def best(self, values: list[float]) -> float:
        return max(values) if self.larger_is_better else min(values)

    def reaches(self, value: float, target: float) -> bool:
        return value >= target if self.larger_is_better else value <= target


METRICS = {
    CompareMetric.VAL_ACC: Metric("val_acc", True, True, "the max over its epochs", "best_val_acc"),
    CompareMetric.VAL_LOSS: Metric("val_loss", False, True, "the min over its epochs", "best_val_loss"),
    CompareMetric.TEST_ACC: Metric("test_acc", True, False, "measured once, after the last epoch", "test_acc"),
}


def check_target(metric: Metric, target: float | None) -> None:
    """An accuracy target lies in (0, 1]; a loss target is positive."""
    if target is None:
        return
    if metric.is_accuracy and not 0 < target <= 1:
        raise UserError(f"an accuracy target must lie in (0, 1], got {target}", where="--target",
                        fix="give a fraction, e.g. --target 0.98 for 98%")
    if not metric.is_accuracy and not (0 < target < math.inf):
        raise UserError(f"a loss target must be a positive number, got {target}", where="--target",
                        fix="e.g. --target 0.1 (reached when val_loss <= 0.1)")


@dataclass
class RunResult:
    """One run's best and final metric, the first epoch reaching the target, or why it is left out."""

    run: Run
    best: float | None = None
    final: float | None = None
    reached: bool = False
    epoch: int | None = None
    seconds: float | None = None
    excluded: str | None = None


NO_VALIDATION = "no validation set (data.val_size 0)"
"""Why a run is left out of a val_* comparison when it trained on all its images."""


def run_result(run: Run, metric: Metric, target: float | None) -> RunResult:
    if run.status != Status.COMPLETED:
        return RunResult(run, excluded=run.status)
    if metric.name.startswith("val_") and run.summary.get("val_size") == 0:
        return RunResult(run, excluded=NO_VALIDATION)
    if metric.per_epoch:
        rows = [row for row in run.epoch_rows if summary_number(row[metric.name]) is not None]  # at epochs' ends
        if not rows:
            return RunResult(run, excluded=f"no {metric.name}")
        values = [row[metric.name] for row in rows]
        result = RunResult(run, metric.best(values), values[-1])
        first = next((row for row in rows if target is not None and metric.reaches(row[metric.name], target)), None)
        if first is not None:
            result.reached, result.epoch, result.seconds = True, first["epoch"], first["seconds"]
        return result
    value = summary_number(run.summary.get(metric.name))
    if value is None:
        return RunResult(run, excluded=f"no {metric.name}")
    return RunResult(run, value, value, reached=target is not None and metric.reaches(value, target))


@dataclass
class GroupResult:
    """A group of seeds: summaries of the completed runs' best and final metric, and the test verdict."""

    group: Group
    results: list[RunResult]
    best: Summary = field(init=False)
    final: Summary = field(init=False)
    test: TTest | None = None
    p_holm: float | None = None
    """The test's p, Holm-corrected over the groups tested against the best: what the verdict follows."""
    verdict: str = "n/a"
    """best | indistinguishable (from the best, p_holm >= ALPHA) | worse | n/a (fewer than 2 seeds on a side)."""
    identical_to: str | None = None
    """The label of a group ranked above whose runs are the same, seed by seed (plateau that never cut, and
    constant): reported as one, tested once, sharing that group's test and verdict."""

    def __post_init__(self):
        self.best = summarize(self.per_seed("best"))
        self.final = summarize(self.per_seed("final"))

    @property
    def used(self) -> list[RunResult]:
        return [r for r in self.results if r.excluded is None]

    @property
    def seeds(self) -> dict[int, list[RunResult]]:
        """The completed runs by seed, in order of first appearance."""
        by_seed: dict[int, list[RunResult]] = {}
        for r in self.used:
            by_seed.setdefault(r.run.seed, []).append(r)
        return by_seed

    def per_seed(self, attribute: str) -> list[float]:
        """One value per distinct seed: the run's `best` or `final`, the mean over a seed's reruns."""
        return list(self.by_seed(attribute).values())

    def by_seed(self, attribute: str) -> dict[int, float]:
        return {seed: statistics.fmean(getattr(r, attribute) for r in runs) for seed, runs in self.seeds.items()}

    @property
    def reruns(self) -> dict[int, int]:
        """Seeds run more than once -> how many completed runs they have."""
        return {seed: len(runs) for seed, runs in self.seeds.items() if len(runs) > 1}

    @property
    def reached(self) -> list[RunResult]:
        return [r for r in self.used if r.reached]

    @property
    def excluded(self) -> dict[str, int]:
        """Why runs are left out -> how many."""
        return Counter(r.excluded for r in self.results if r.excluded is not None)

    def mean_to_target(self, attribute: str) -> float | None:
        """Mean epochs or seconds to the target over the runs that reached it; None where none did."""
        values = [getattr(r, attribute) for r in self.reached if getattr(r, attribute) is not None]
        return sum(values) / len(values) if values else None


@dataclass
class Comparison:
    metric: Metric
    target: float | None
    fields: list[str]
    """The spec fields that tell the groups apart (dotted), in the spec's order."""
    groups: list[GroupResult]
    """Best first; groups without a completed run last."""

    @property
    def runs(self) -> int:
        return sum(len(g.results) for g in self.groups)


def compare(runs: list[Run], metric: Metric, target: float | None = None) -> Comparison:
    """The runs' groups ranked by mean best metric, each tested against the leader (`_test_against_the_best`)."""
    check_target(metric, target)
    groups = [GroupResult(g, [run_result(run, metric, target) for run in g.runs]) for g in group_runs(runs)]
    sign = -1 if metric.larger_is_better else 1
    groups.sort(key=lambda g: (g.best.mean is None, sign * g.best.mean if g.best.mean is not None else 0))
    if groups[0].best.n:
        _test_against_the_best(groups)
    fields = list(dict.fromkeys(name for g in groups for name in g.group.fields))
    return Comparison(metric, target, fields, groups)


def _test_against_the_best(groups: list[GroupResult]) -> None:
    """Each group against the leader, once per distinct result: a group whose runs equal those of one ranked
    above shares its test; the p-values of the others are Holm-corrected together."""
    leader, tested, twins = groups[0], [], []
    leader.verdict = "best"
    for number, other in enumerate(groups[1:], 1):
        twin = next((g for g in groups[:number] if _same_runs(g, other)), None)
        if twin is not None:
            other.identical_to = twin.group.label
            twins.append((other, twin))
        elif other.best.n >= 2 and leader.best.n >= 2:
            other.test = _t_test(other, leader)
            tested.append(other)
    for g, p in zip(tested, holm([g.test.p for g in tested])):
        g.p_holm, g.verdict = p, "indistinguishable" if p >= ALPHA else "worse"
    for g, twin in twins:  # in ranking order: a twin's own twin ranks above it and is settled first
        g.test, g.p_holm, g.verdict = twin.test, twin.p_holm, twin.verdict


def _t_test(group: GroupResult, leader: GroupResult) -> TTest:
    """Paired over the seeds where both ran the same seeds, else Welch."""
    mine, best = group.by_seed("best"), leader.by_seed("best")
    if mine.keys() == best.keys():
        return paired([mine[seed] for seed in best], list(best.values()))
    return welch(list(mine.values()), list(best.values()))


def _same_runs(a: GroupResult, b: GroupResult) -> bool:
    """Both groups completed the same seeds and, seed by seed, recorded the same epochs (all but the time taken)
    and the same final numbers."""
    if not a.used or a.seeds.keys() != b.seeds.keys():
        return False
    return all(_record(a.seeds[seed][0].run) == _record(b.seeds[seed][0].run) for seed in a.seeds)


def _record(run: Run) -> tuple:
    rows = tuple(tuple((k, v) for k, v in row.items() if k != "seconds") for row in run.metrics)
    return rows, run.summary.get("test_acc"), run.summary.get("test_loss")


def compare_by(runs: list[Run], metric: Metric, key: Callable[[Run], Hashable],
               target: float | None = None) -> dict[Hashable, Comparison]:
    """One comparison per value of `key` (a study's budget), in order of first appearance."""
    parts: dict[Hashable, list[Run]] = {}
    for run in runs:
        parts.setdefault(key(run), []).append(run)
    return {value: compare(part, metric, target) for value, part in parts.items()}


def average_ranks(comparison: Comparison) -> dict[int, float]:
    """REX's measure: per seed that every group with a completed run has, the groups ranked by their value
    (1 = best, ties share the mean rank), averaged over those seeds; by the group's place in the comparison."""
    ranked = {number: g for number, g in enumerate(comparison.groups) if g.best.n}
    values = {number: dict(zip(g.seeds, g.per_seed("best"))) for number, g in ranked.items()}
    seeds = set.intersection(*(set(v) for v in values.values())) if values else set()
    sign = 1 if comparison.metric.larger_is_better else -1
    ranks: dict[int, list[float]] = {number: [] for number in values}
    for seed in sorted(seeds):
        at = {number: sign * v[seed] for number, v in values.items()}
        for number, value in at.items():
            ranks[number].append(sum(v > value for v in at.values()) + (sum(v == value for v in at.values()) + 1) / 2)
    return {number: statistics.fmean(r) for number, r in ranks.items() if r}


# -- what the output shows: cells for a table, rows for CSV, notes under the table ------------------

@dataclass
class View:
    title: str
    columns: list[tuple[str, bool]]
    """(header, right-aligned)."""
    rows: list[list[str]]
    notes: list[str]


def view(comparison: Comparison) -> View:
    """The comparison as text cells (accuracies in %), for the terminal table and the Markdown table."""
    metric, target = comparison.metric, comparison.target
    unit = " (%)" if metric.is_accuracy else ""
    columns = [(name, False) for name in comparison.fields] or [("run", False)]
    columns += [(f"{metric.value_name}{unit}", True), ("95% CI", True), ("n", True)]
    if metric.per_epoch:
        columns.append((f"final {metric.name}{unit}", True))
    columns.append(("vs best", False))
    if target is not None:
        columns.append((f"reached {_target_text(metric, target)}", True))
        if metric.per_epoch:
            columns += [("epochs", True), ("seconds", True)]
    any_excluded = any(g.excluded for g in comparison.groups)
    if any_excluded:
        columns.append(("left out", False))
    rows = []
    for g in comparison.groups:
        row = [show_value(g.group.fields.get(name, "-")) for name in comparison.fields] or [g.group.label]
        bounds = g.best.ci95_bounds
        ci = f"{_num(bounds[0], metric)} – {_num(bounds[1], metric)}" if bounds else "n/a" if g.best.n else "-"
        n = str(g.best.n) + (f" ({len(g.used)} runs)" if g.reruns else "")
        row += [_mean_std(g.best, metric), ci, n]
        if metric.per_epoch:
            row.append(_mean_std(g.final, metric))
        row.append(_verdict_text(g))
        if target is not None:
            row.append(f"{len(g.reached)}/{len(g.used)}")
            if metric.per_epoch:
                epochs, seconds = g.mean_to_target("epoch"), g.mean_to_target("seconds")
                row += ["-" if epochs is None else f"{epochs:.3g}", "-" if seconds is None else f"{seconds:.1f}"]
        if any_excluded:
            row.append(", ".join(f"{count} {why}" for why, count in g.excluded.items()) or "-")
        rows.append(row)
    title = f"{metric.name}: {comparison.runs} runs in {len(comparison.groups)} groups, mean ± std over seeds"
    return View(title, columns, rows, notes(comparison))


def notes(comparison: Comparison) -> list[str]:
    """What the numbers are, in sentences: the paragraph under the table."""
    metric, target, groups = comparison.metric, comparison.target, comparison.groups
    sizes = [g.best.n for g in groups]
    n_text = f"n = {sizes[0]} per group" if len(set(sizes)) == 1 else f"n per group: {', '.join(map(str, sizes))}"
    lines = [f"Mean ± std over seeds ({n_text}) of each run's {metric.value_name} ({metric.best_means}); "
             f"95% CI = mean ± t(0.975, n−1)·std/√n. vs best: a two-sided t-test of the per-seed values "
             f"against the best group's, paired where both ran the same seeds (the same initial weights and "
             f"data order), else Welch's; p is Holm-corrected over the groups tested (Holm) and the verdict "
             f"follows it, α = {ALPHA} (≈ best: p ≥ {ALPHA}; worse: p < {ALPHA}; n/a: fewer than 2 seeds on "
             f"a side). Groups whose runs are the same seed by seed are shown as one (identical to) and "
             f"tested once."]
    reruns = [(g, seed, runs) for g in groups for seed, runs in g.reruns.items()]
    if reruns:
        shown = "; ".join(f"{g.group.label}: {runs} runs of seed {seed}" for g, seed, runs in reruns[:3])
        more = f"; and {len(reruns) - 3} more" if len(reruns) > 3 else ""
        lines.append(f"n counts distinct seeds: reruns of a seed ({shown}{more}) are averaged into that seed's one "
                     f"value, so they add no weight to the mean, CI or test; give each run its own seed "
                     f"(lrdecay sweep --seeds N) to measure the spread over seeds.")
    if target is not None:
        if metric.per_epoch:
            lines.append(f"Target: the first epoch with {_target_text(metric, target)}; epochs and seconds "
                         f"(wall time to the end of that epoch, evaluation included) are means over the runs "
                         f"that reached it.")
        else:
            lines.append(f"Target: {_target_text(metric, target)} after training ({metric.name} has no "
                         f"per-epoch values, so no epochs or seconds to reach it).")
    excluded = sum((g.excluded for g in groups), Counter())
    if excluded:
        why = ", ".join(f"{count} {reason}" for reason, count in excluded.items())
        lines.append(f"Left out of all statistics: {excluded.total()} of {comparison.runs} runs ({why}); "
                     f"only completed runs count.")
        if NO_VALIDATION in excluded:
            lines.append(f"Runs trained with data.val_size 0 have no {metric.name}: compare them with "
                         f"--metric test_acc.")
    else:
        lines.append(f"All {comparison.runs} runs completed.")
    return lines


def csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per group, numbers unrounded (accuracies as fractions); empty where there is none."""
    rows = []
    for rank, g in enumerate(comparison.groups, 1):
        bounds = g.best.ci95_bounds or (None, None)
        row: dict[str, Any] = {"rank": rank, "label": g.group.label}
        row.update({name: g.group.fields.get(name) for name in comparison.fields})
        row.update(metric=comparison.metric.name, n=g.best.n, completed=len(g.used), runs=len(g.results),
                   left_out=";".join(f"{count} {why}" for why, count in g.excluded.items()),
                   best_mean=g.best.mean, best_std=g.best.std, ci95_low=bounds[0], ci95_high=bounds[1],
                   final_mean=g.final.mean, final_std=g.final.std,
                   test=g.test and g.test.kind, t=g.test and g.test.t, df=g.test and g.test.df,
                   p_value=g.test and g.test.p, p_holm=g.p_holm, diff=g.test and g.test.diff,
                   diff_ci_low=g.test and g.test.ci_low, diff_ci_high=g.test and g.test.ci_high,
                   identical_to=g.identical_to, vs_best=g.verdict)
        if comparison.target is not None:
            row.update(target=comparison.target, reached=len(g.reached), epochs_to_target=g.mean_to_target("epoch"),
                       seconds_to_target=g.mean_to_target("seconds"))
        rows.append(row)
    return rows


def _target_text(metric: Metric, target: float) -> str:
    shown = f"{100 * target:g}%" if metric.is_accuracy else f"{target:g}"
    return f"{metric.name} {'≥' if metric.larger_is_better else '≤'} {shown}"


def _num(value: float, metric: Metric) -> str:
    return f"{100 * value:.2f}" if metric.is_accuracy else f"{value:.4f}"


def _mean_std(summary: Summary, metric: Metric) -> str:
    if summary.mean is None:
        return "-"
    if summary.std is None:
        return _num(summary.mean, metric)
    return f"{_num(summary.mean, metric)} ± {_num(summary.std, metric)}"


def _verdict_text(g: GroupResult) -> str:
    same = f"identical to {g.identical_to}" if g.identical_to else ""
    if g.test is None:
        return same or {"best": "best", "n/a": "n/a" if g.best.n else "-"}[g.verdict]
    if math.isinf(g.test.t):
        p = "p = 0 (no spread)"
    else:
        p = "p < 0.001" if g.test.p < 0.001 else f"p = {g.test.p:.3g}"
        p += "" if g.p_holm == g.test.p else ", Holm < 0.001" if g.p_holm < 0.001 else f", Holm {g.p_holm:.3g}"
    text = f"{'≈ best' if g.verdict == 'indistinguishable' else 'worse'}, {g.test.kind} {p}"
    return f"{same}: {text}" if same else text
