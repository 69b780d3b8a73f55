"""A study's figures and report.md (matplotlib, no torch import) from study.csv's rows and the tuning rows.

The verdict says only what the statistics show: per budget, the highest mean test accuracy and the methods that a
paired t-test over the shared final seeds, Holm-corrected over the budget's methods, cannot tell from it (p_holm >=
0.05); methods whose final runs are identical are one result; an LR still at the grid's edge once the study
extended it as far as max_extensions allows is flagged.
"""

from __future__ import annotations

from pathlib import Path

from lrdecay_cli.analysis.compare import ALPHA
from lrdecay_cli.output.plot import DPI, palette, render
from lrdecay_cli.rundir.fs import write_atomic
from lrdecay_cli.rundir.layout import STUDY_REPORT

SIZE = (8.0, 4.5)


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def by_cell(rows: list[dict], column: str) -> dict[tuple[str, int], float]:
    """(method, budget) -> the rows' `column` (p_value, average_rank), where it has one."""
    return {(r["method"], r["budget_epochs"]): r[column] for r in rows if r.get(column) is not None}


def _figure():
    from matplotlib.figure import Figure

    return Figure(figsize=SIZE, dpi=DPI, layout="constrained")


def _budget_axes(ax, budgets: list[int], ylabel: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set(xlabel="budget (epochs)", ylabel=ylabel)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")


def figures(study, tuning: list[dict], rows: list[dict]) -> dict:
    """The three figures, by name (not yet written)."""
    methods = [m.name for m in study.spec.methods]
    colors = dict(zip(methods, palette(len(methods))))
    return {"test_acc_vs_budget": _accuracy_figure(study, rows, colors), "average_rank": _rank_figure(study, rows, colors),
            "lr_sensitivity": _sensitivity_figure(study, tuning, colors)}


def _accuracy_figure(study, rows: list[dict], colors: dict):
    """Test accuracy against budget, mean over the final seeds with its 95% CI band."""
    fig = _figure()
    ax = fig.add_subplot()
    for method, color in colors.items():
        mine = [r for r in rows if r["method"] == method and r["test_acc_mean"] is not None]
        ax.plot([r["budget_epochs"] for r in mine], [100 * r["test_acc_mean"] for r in mine], "o-",
                color=color, label=method)
        banded = [r for r in mine if r["ci_low"] is not None]
        if banded:
            ax.fill_between([r["budget_epochs"] for r in banded], [100 * r["ci_low"] for r in banded],
                            [100 * r["ci_high"] for r in banded], color=color, alpha=0.15, linewidth=0)
    _budget_axes(ax, study.spec.budgets, "test accuracy (%)")
    ax.set_title(f"{study.spec.name}: test accuracy at each budget (mean over {study.spec.seeds} seeds, 95% CI band)")
    return fig


def _rank_figure(study, rows: list[dict], colors: dict):
    """The average rank over seeds against budget; hollow where significantly below the budget's best."""
    ranks, p = by_cell(rows, "average_rank"), by_cell(rows, "p_holm")
    fig = _figure()
    ax = fig.add_subplot()
    for method, color in colors.items():
        points = [(b, ranks[method, b], p.get((method, b))) for b in study.spec.budgets if (method, b) in ranks]
        ax.plot([b for b, _, _ in points], [r for _, r, _ in points], "-", color=color, label=method)
        for b, r, pv in points:  # filled: not significantly below the budget's best
            below = pv is not None and pv < ALPHA
            ax.plot([b], [r], "o", color=color, markerfacecolor="white" if below else color)
    _budget_axes(ax, study.spec.budgets, "average rank (1 = best)")
    ax.invert_yaxis()
    ax.set_title(f"average rank over seeds; hollow: significantly below the best (Holm p < {ALPHA})", fontsize="medium")
    return fig


def _sensitivity_figure(study, tuning: list[dict], colors: dict):
    """The validation metric against the initial LR, a panel per budget; a star marks the chosen LR (a method that
    tunes its own parameters: the curve of the setting chosen)."""
    budgets, metric = study.spec.budgets, study.spec.metric
    fig = _figure()
    fig.set_size_inches(max(SIZE[0], 2.6 * len(budgets) + 1.5), SIZE[1])
    axes = fig.subplots(1, len(budgets), sharey=True, squeeze=False)[0]
    scale = 100 if metric.larger_is_better else 1
    for ax, budget in zip(axes, budgets):
        for method, color in colors.items():
            at = [r for r in tuning if r["method"] == method and r["budget_epochs"] == budget]
            tuned = next((r["tuned"] for r in at if r.get("chosen")), at[0]["tuned"] if at else "")
            mine = sorted((r for r in at if r["value"] is not None and r["tuned"] == tuned),  # the chosen setting's
                          key=lambda r: r["lr"])
            ax.plot([r["lr"] for r in mine], [scale * r["value"] for r in mine], ".-", color=color, label=method)
            ax.plot([r["lr"] for r in mine if r.get("chosen")], [scale * r["value"] for r in mine if r.get("chosen")],
                    "*", color=color, markersize=11)
        ax.set_xscale("log")
        lrs = sorted({r["lr"] for r in tuning if r["budget_epochs"] == budget})  # the grid and its extensions
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs], rotation=45)
        ax.minorticks_off()
        ax.set_xlabel("initial LR")
        ax.set_title(_epochs(budget))
    axes[0].set_ylabel(f"{metric.value}{' (%)' if scale == 100 else ''} (validation)")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    fig.suptitle(f"LR sensitivity (tuning seed{'s' * (study.spec.tune_seeds > 1)}; star: the chosen LR; "
                 f"a flat curve is robust to the LR)")
    return fig


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def verdict(study, rows: list[dict]) -> list[str]:
    """Plain sentences, one per budget and one overall, that claim no more than the tests show: a method is
    significantly below the best only where its Holm-corrected p is below ALPHA."""
    lines, never_worse, tops, p = [], None, [], by_cell(rows, "p_holm")
    for budget in study.spec.budgets:
        ranked = sorted((r for r in rows if r["budget_epochs"] == budget and r["rank"] is not None),
                        key=lambda r: r["rank"])
        if not ranked:
            lines.append(f"At {_epochs(budget)}: no method completed its final runs.")
            continue
        best = ranked[0]
        tops.append((budget, best))
        twins = [r for r in ranked[1:] if r.get("identical_to")]
        ranked = [ranked[0]] + [r for r in ranked[1:] if not r.get("identical_to")]
        tied = [r["method"] for r in ranked[1:] if p.get((r["method"], budget)) is None
                or p[r["method"], budget] >= ALPHA]
        lower = [r["method"] for r in ranked[1:] if r["method"] not in tied]
        text = (f"At {_epochs(budget)}, **{best['method']}** has the highest mean test accuracy "
                f"({_pct(best['test_acc_mean'])}%, n = {best['n']})")
        if tied:
            text += (f"; {', '.join(tied)} {'is' if len(tied) == 1 else 'are'} not significantly different from it "
                     f"(paired t-test, Holm p >= {ALPHA}), so these seeds do not single out a winner")
        if lower:
            text += f"; {'every other method is' if not tied else ', '.join(lower) + (' is' if len(lower) == 1 else ' are')} significantly lower"
        if twins:
            text += "; " + "; ".join(f"{t['method']} trained the very same runs as {t['identical_to']} (one result, "
                                     f"tested once)" for t in twins)
        lines.append(text + ".")
        group = {best["method"], *tied, *(t["method"] for t in twins if t["identical_to"] in {best["method"], *tied})}
        never_worse = group if never_worse is None else never_worse & group
    top_names = [t["method"] for _, t in tops]
    if top_names and len(set(top_names)) == 1:
        lines.append(f"Overall: {top_names[0]} has the highest mean at every budget.")
    elif top_names:
        lines.append("Overall: the method with the highest mean changes with the budget ("
                     + ", ".join(f"{b}: {t['method']}" for b, t in tops) + ").")
    if never_worse:
        lines.append(f"Never significantly below the best at any budget: {', '.join(sorted(never_worse))}.")
    lines.append(f"Each mean is over {study.spec.seeds} seed{'s' * (study.spec.seeds != 1)} at the LR the tuning stage "
                 f"chose. Each method is tested against its budget's best with a paired t-test over the final seeds "
                 f"(every method trains the same seeds: the same initial weights and data order), and the p-values "
                 f"are Holm-corrected over the methods of that budget; the verdict follows the corrected ones.")
    return lines


def edge_choices(rows: list[dict]) -> list[str]:
    """Methods whose chosen LR is still the smallest or largest they were tuned at, after every extension the
    bound allowed: their best LR may lie outside the grid."""
    return [f"{r['method']} at {_epochs(r['budget_epochs'])} chose {r['lr']:g}, the {r['edge']} it was tuned at"
            for r in rows if r.get("edge")]


def _table(header: list[str], body: list[list[str]]) -> str:
    rule = "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in body)])


def _by_method(study, show) -> str:
    """A table with a row per method and a column per budget, each cell `show(method, budget)`."""
    budgets = study.spec.budgets
    return _table(["method", *(_epochs(b) for b in budgets)],
                  [[m.name, *(show(m.name, b) for b in budgets)] for m in study.spec.methods])


def _intro(study) -> str:
    spec, budgets = study.spec, study.spec.budgets
    base = f"the base spec's {study.base.get('model', {}).get('name', 'mlp')} model"
    return (f"{len(spec.methods)} methods on {base}, budgets {', '.join(map(str, budgets))} epochs. **Tuning:** every "
            f"method x budget x initial LR ({', '.join(f'{lr:g}' for lr in spec.lr_list())}) on tuning seed"
            f"{'s' * (spec.tune_seeds > 1)} {', '.join(map(str, spec.tune_seed_list()))}; per method and budget the LR "
            f"with the best `{spec.metric.value}` on the validation set is chosen (the tuning runs never evaluate on "
            f"the test set){_extension_note(spec)}. **Final:** each method x budget at its chosen LR on seeds "
            f"{', '.join(map(str, spec.final_seed_list()))}, evaluated on the test set.")


def _extension_note(spec) -> str:
    if not spec.max_extensions or spec.edge_steps() is None:
        return ""
    return (f"; a chosen LR at either end of the LRs tried was tuned again one grid step beyond it, up to "
            f"{spec.max_extensions} time{'s' * (spec.max_extensions != 1)} per side (`round` in tuning.csv)")


def markdown(study, rows: list[dict]) -> str:
    at = {(r["method"], r["budget_epochs"]): r for r in rows}
    p, holm, ranks = by_cell(rows, "p_value"), by_cell(rows, "p_holm"), by_cell(rows, "average_rank")

    def accuracy(m: str, b: int) -> str:
        r = at.get((m, b))
        if not r or r["test_acc_mean"] is None:
            return "-"
        spread = f" ± {_pct(r['test_acc_std'])}" if r["test_acc_std"] is not None else ""
        return f"{_pct(r['test_acc_mean'])}{spread} (#{r['rank']})"

    def test(m: str, b: int) -> str:
        r = at.get((m, b), {})
        if r.get("identical_to"):
            return f"= {r['identical_to']}"
        if p.get((m, b)) is None:
            return "best" if r.get("rank") == 1 else "-"
        return f"{p[m, b]:.3f} / {holm[m, b]:.3f}{'*' if holm[m, b] < ALPHA else ''}"

    def difference(m: str, b: int) -> str:
        r = at.get((m, b), {})
        if r.get("diff") is None:
            return "-"
        return f"{100 * r['diff']:+.2f} ({100 * r['diff_ci_low']:+.2f} to {100 * r['diff_ci_high']:+.2f})"

    parts = [
        f"# Study {study.spec.name}: which decay method wins at each budget", "", _intro(study), "",
        "## Verdict", "", *(f"- {line}" for line in verdict(study, rows)), "",
        "## Test accuracy (%), mean ± std over the final seeds (rank at that budget)", "", _by_method(study, accuracy), "",
        "## Average rank over seeds (1 = best; REX's measure)", "",
        _by_method(study, lambda m, b: f"{ranks[m, b]:.2f}" if (m, b) in ranks else "-"), "",
        f"## Paired t-test against each budget's best (p / Holm-corrected p; * Holm below {ALPHA}; = another method:"
        f" the very same final runs)", "", _by_method(study, test), "",
        "## Difference to each budget's best (percentage points of test accuracy, 95% CI of the paired mean difference)",
        "", _by_method(study, difference), "",
        f"## Chosen initial LRs (by validation {study.spec.metric.value}; a method's tuned parameters beside)", "",
        _by_method(study, lambda m, b: f"{at[m, b]['lr']:g}" + (f" ({at[m, b]['tuned']})" if at[m, b]["tuned"] else "")
                   if at.get((m, b)) and at[m, b]["lr"] is not None else "none completed"), "",
    ]
    if edges := edge_choices(rows):
        n = study.spec.max_extensions
        extended = f" after {n} extension{'s' * (n != 1)} per side" if n and study.spec.edge_steps() else ""
        parts += [f"Still at the edge of the LR grid{extended} (widen `lrs` to be sure the best LR is inside it): "
                  + "; ".join(edges) + ".", ""]
    parts += ["## Figures", "", "![test accuracy against budget](test_acc_vs_budget.png)", "",
              "![average rank against budget](average_rank.png)", "", "![LR sensitivity](lr_sensitivity.png)", "",
              "Files: `study.csv` (this table, accuracies as fractions), `tuning.csv` (every method x budget x LR), "
              "`tune/` (and `tune-1/`, ... for the extensions), `final/` (sweep directories: `lrdecay plot`, "
              "`lrdecay compare` work on them).", ""]
    return "\n".join(parts)


def write_report(study, tuning: list[dict], rows: list[dict]) -> Path:
    """Render the figures and report.md, then write them (each atomically); the report's path."""
    files = {f"{name}.png": render(fig, "png") for name, fig in figures(study, tuning, rows).items()}
    files[STUDY_REPORT] = markdown(study, rows)
    for name, data in files.items():
        write_atomic(study.path / name, data)
    return study.path / STUDY_REPORT
