"""`lrdecay report`: one self-contained HTML page with the figures, the comparison and each run's spec diff."""

from __future__ import annotations

import re
import shutil

from conftest import read_csv


def test_a_sweeps_page_holds_its_figures_comparison_and_every_trial(cli, finished_sweep, tmp_path):
    sweep = shutil.copytree(finished_sweep, tmp_path / "sweep")
    result = cli("report", sweep)
    assert result.exit_code == 0, result.output
    page = sweep / "report.html"
    assert result.stdout == f"{page}\n"
    text = page.read_text()
    assert len(re.findall(r"<img alt='(lr|loss|accuracy|overview)' src='data:image/png;base64,", text)) == 4
    assert "src='http" not in text and "<link" not in text  # self-contained
    assert "Welch" in text and "<th>schedule.name</th>" in text
    for trial in sorted(p for p in sweep.iterdir() if p.name.startswith("t0")):
        assert f"<td>{trial.name}</td>" in text
    for method in ("constant", "step", "cosine"):
        assert f"<td>{method}</td>" in text
    assert len(read_csv(sweep / "results.csv")) == 6


def test_several_targets_need_out_and_nothing_is_written(cli, finished_sweep, tmp_path):
    result = cli("report", finished_sweep / "t000", finished_sweep / "t001")
    assert result.exit_code == 2 and "--out" in result.stderr
    assert not (finished_sweep / "t000" / "report.html").exists()
    out = tmp_path / "two.html"
    assert cli("report", finished_sweep / "t000", finished_sweep / "t001", "--out", out).exit_code == 0
    assert out.read_text().count("<img") == 4
