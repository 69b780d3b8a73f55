"""`lrdecay report`: one self-contained HTML page of runs or a sweep (no torch import): the figures as embedded
PNGs, the compare table and its notes, what each run's spec changes against the others, and its outcome."""

from __future__ import annotations

import base64
import html

from lrdecay_cli.analysis.compare import METRICS, compare, view
from lrdecay_cli.analysis.grouping import differing_fields, show_value
from lrdecay_cli.config.choices import CompareMetric
from lrdecay_cli.output.console import percent
from lrdecay_cli.output.plot import figures, render
from lrdecay_cli.rundir.read import Run

STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}td.r{text-align:right}img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}
details{margin:1em 0}"""


def _table(header: list[str], rows: list[list[str]], right: list[bool] | None = None) -> str:
    right = right or [False] * len(header)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=r' if r else ''}>{html.escape(c)}</td>" for c, r in zip(row, right))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(runs: list[Run], title: str, metric: CompareMetric = CompareMetric.VAL_ACC) -> str:
    """The HTML of the page (the figures rendered and embedded)."""
    plots = figures(runs)
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    shown = view(compare(runs, METRICS[metric]))
    parts.append(f"<h2>Comparison</h2><p>{html.escape(shown.title)}</p>")
    parts.append(_table([h for h, _ in shown.columns], shown.rows, [r for _, r in shown.columns]))
    parts += [f"<p>{html.escape(line)}</p>" for line in shown.notes]
    for name, fig in plots.figures.items():
        data = base64.b64encode(render(fig, "png")).decode()
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts += [f"<p>note: {html.escape(line)}</p>" for line in plots.notes]
    fields = differing_fields(runs)
    parts.append("<h2>Runs</h2><p>What each run's spec sets differently from the others (seed included), "
                 "and how it ended.</p>")
    header = ["run", *fields, "seed", "status", "best val acc", "test acc", "seconds"]
    rows = [[run.path.name, *(show_value(run.config.get(f, "-")) for f in fields), str(run.seed),
             str(run.summary.get("status")), percent(run.summary.get("best_val_acc")), percent(run.summary.get("test_acc")),
             f"{run.summary.get('wall_seconds') or 0:.1f}"] for run in runs]
    parts.append(_table(header, rows, [False] * (len(fields) + 1) + [True, False, True, True, True]))
    common = {k: v for k, v in runs[0].config.items() if k not in fields and k != "seed"
              and all(run.config.get(k) == v for run in runs)}
    parts.append("<details><summary>The spec they share</summary>"
                 + _table(["field", "value"], [[k, show_value(v)] for k, v in common.items()]) + "</details>")
    parts.append("</body></html>\n")
    return "".join(parts)
