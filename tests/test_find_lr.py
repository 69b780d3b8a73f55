"""`lrdecay find-lr`, the LR range test, through the CLI on tiny real specs: every number in its output
is recomputed here from the CSV it wrote, with independent code (torch.gradient for the slope)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import TINY, read_csv, run_dirs
from lrdecay_cli.cli import app
from lrdecay_cli.config.spec_file import load, merge_sections

SKIP_BEGIN, SKIP_END = 10, 1  # Lightning's suggestion(skip_begin=10, skip_end=1)


def invoke(*args) -> "Result":
    return CliRunner().invoke(app, ["find-lr", *map(str, args)], prog_name="lrdecay")


def spec_file(directory: Path, changes: dict | None = None, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(merge_sections(TINY, changes or {})))
    return path


def the_run(runs: Path) -> Path:
    (run,) = run_dirs(runs)
    return run


def table(run: Path) -> dict[str, np.ndarray]:
    rows = read_csv(run / "find_lr.csv")
    return {key: np.array([float(r[key]) for r in rows]) for key in ("step", "lr", "loss", "smoothed_loss")}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """TINY (sgd, momentum 0.9) with the default range, --write next to it, and an older run in the
    runs dir that must stay untouched."""
    root = tmp_path_factory.mktemp("find_lr")
    spec, runs, out = spec_file(root), root / "runs", root / "suggested.yaml"
    older = runs / "20260101-000000-tiny"
    older.mkdir(parents=True)
    (older / "checkpoint.pt").write_bytes(b"weights of another run")
    result = invoke(spec, "--runs-dir", runs, "--write", out, "--quiet")
    assert result.exit_code == 0, result.output
    return {"spec": spec, "runs": runs, "out": out, "older": older, "result": result,
            "run": next(p for p in run_dirs(runs) if p != older)}


def test_writes_its_files_into_one_new_directory(default_run):
    run, runs = default_run["run"], default_run["runs"]
    assert run_dirs(runs) == sorted([default_run["older"], run])
    assert run.name.endswith("-tiny-find-lr") and run.name[:15].replace("-", "").isdigit()
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "find_lr.csv", "find_lr.png", "summary.json"]
    assert (run / "find_lr.csv").read_text().splitlines()[0] == "step,lr,loss,smoothed_loss"
    assert load(run / "config.yaml") == load(default_run["spec"])
    assert (default_run["older"] / "checkpoint.pt").read_bytes() == b"weights of another run"
    assert default_run["result"].stdout == "" and default_run["result"].stderr == ""


def test_png_decodes_and_is_not_blank(default_run):
    import matplotlib.image

    pixels = matplotlib.image.imread(default_run["run"] / "find_lr.png")
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]).round(2), axis=0)
    assert len(colours) > 20  # axes, text, two curves and the markers, not one flat colour


def test_lr_grows_exponentially_from_min_to_max(default_run):
    t = table(default_run["run"])
    n = len(t["lr"])
    assert t["step"].tolist() == list(range(n))
    assert t["lr"][0] == pytest.approx(1e-7, rel=1e-12)
    ratios = t["lr"][1:] / t["lr"][:-1]
    assert ratios == pytest.approx(np.full(n - 1, (10 / 1e-7) ** (1 / 99)), rel=1e-9)


def test_reaches_max_lr_when_nothing_diverges(tmp_path):
    runs = tmp_path / "runs"
    result = invoke(spec_file(tmp_path), "--runs-dir", runs, "--min-lr", 1e-5, "--max-lr", 1e-2, "--steps", 30, "-q")
    assert result.exit_code == 0, result.output
    t = table(the_run(runs))
    summary = json.loads((the_run(runs) / "summary.json").read_text())
    assert len(t["lr"]) == 30 and not summary["stopped_early"] and summary["stop_reason"] is None
    assert (t["lr"][0], t["lr"][-1]) == (pytest.approx(1e-5, rel=1e-12), pytest.approx(1e-2, rel=1e-12))
    assert t["lr"][1:] / t["lr"][:-1] == pytest.approx(np.full(29, 1000 ** (1 / 29)), rel=1e-9)


def test_smoothed_loss_is_the_bias_corrected_ema_of_the_loss(default_run):
    t = table(default_run["run"])
    avg, expected = 0.0, []
    for i, loss in enumerate(t["loss"]):
        avg = 0.98 * avg + 0.02 * loss
        expected.append(avg / (1 - 0.98 ** (i + 1)))
    assert t["smoothed_loss"] == pytest.approx(np.array(expected), rel=1e-12)
    assert t["smoothed_loss"][0] == t["loss"][0]  # the bias correction makes the first value the loss itself


def recomputed(t: dict[str, np.ndarray]) -> tuple[float, float]:
    """(steepest-descent LR, min-loss LR) after Lightning's skips, with torch.gradient against ln(lr) over
    the rows up to the least smoothed loss."""
    lrs, smoothed = t["lr"][SKIP_BEGIN:-SKIP_END], t["smoothed_loss"][SKIP_BEGIN:-SKIP_END]
    keep = np.isfinite(smoothed)
    lrs, smoothed = lrs[keep], smoothed[keep]
    lowest = int(np.argmin(smoothed))
    lrs, smoothed = lrs[:lowest + 1], smoothed[:lowest + 1]
    slope = torch.gradient(torch.tensor(smoothed), spacing=(torch.tensor(np.log(lrs)),))[0]
    return float(lrs[int(slope.argmin())]), float(lrs[lowest])


def test_suggestion_is_the_steepest_descent_recomputed_from_the_csv(default_run):
    run = default_run["run"]
    t, summary = table(run), json.loads((run / "summary.json").read_text())
    steep, lowest = recomputed(t)
    assert summary["suggested_lr"] == steep
    assert summary["min_loss_lr"] == lowest and summary["min_loss_lr_div10"] == pytest.approx(lowest / 10)
    assert t["lr"][SKIP_BEGIN] <= steep <= t["lr"][-1 - SKIP_END]
    assert 1e-7 <= summary["min_loss_lr_div10"] < lowest <= 10
    assert summary["steps_run"] == len(t["lr"]) and summary["steps_requested"] == 100
    assert summary["settings"] == {"min_lr": 1e-7, "max_lr": 10.0, "steps": 100, "smoothing": 0.98, "diverge": 4.0,
                                   "skip_begin": SKIP_BEGIN, "skip_end": SKIP_END}
    assert summary["schedule_ignored"] == "exponential" and summary["status"] == "completed"


def test_write_gives_the_input_spec_with_the_suggested_lr(default_run):
    written = load(default_run["out"])
    summary = json.loads((default_run["run"] / "summary.json").read_text())
    assert written.optimizer.lr == summary["suggested_lr"] and summary["spec_written"] == str(default_run["out"])
    original = load(default_run["spec"])
    assert written.model_copy(update={"optimizer": original.optimizer}) == original
    assert written != original


def test_huge_max_lr_stops_early_on_divergence(tmp_path):
    runs = tmp_path / "runs"
    result = invoke(spec_file(tmp_path), "--runs-dir", runs, "--max-lr", 1e6, "-q")
    assert result.exit_code == 0, result.output
    t = table(the_run(runs))
    summary = json.loads((the_run(runs) / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps_run"] == len(t["lr"]) < 100
    last, before = t["smoothed_loss"][-1], t["smoothed_loss"][:-1]
    assert not math.isfinite(last) or last > 4 * before.min()
    assert np.all(np.isfinite(before)) and np.all(before <= 4 * np.minimum.accumulate(before))
    assert summary["suggested_lr"] == recomputed(t)[0] < t["lr"][-1]


def test_the_suggestion_follows_the_optimizer(default_run, tmp_path):
    """Adam's steps are sized by its moment estimates, SGD's by the gradient: Adam's good LRs are smaller.
    A --write over an existing file goes through with --force."""
    runs, out = tmp_path / "runs", default_run["out"].parent / "adam.yaml"
    out.write_text("to be replaced\n")
    adam = spec_file(tmp_path, {"optimizer": {"name": "adam", "lr": 1e-3}})
    result = invoke(adam, "--runs-dir", runs, "--write", out, "--force", "-q")
    assert result.exit_code == 0, result.output
    adam_lr = json.loads((the_run(runs) / "summary.json").read_text())["suggested_lr"]
    sgd_lr = json.loads((default_run["run"] / "summary.json").read_text())["suggested_lr"]
    assert adam_lr == recomputed(table(the_run(runs)))[0]
    assert adam_lr < sgd_lr
    assert load(out).optimizer.lr == adam_lr and load(out).optimizer.name == "adam"


def test_prints_the_result(tmp_path):
    result = invoke(spec_file(tmp_path), "--runs-dir", tmp_path / "runs", "--steps", 20)
    assert result.exit_code == 0, result.output
    summary = json.loads((the_run(tmp_path / "runs") / "summary.json").read_text())
    assert f"{summary['suggested_lr']:.3g}" in result.stdout
    assert f"{summary['min_loss_lr']:.3g}" in result.stdout and "find-lr" in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["--min-lr", 0], "--min-lr: 0.0 is not a positive number"),
    (["--min-lr", -1e-3], "--min-lr: -0.001 is not a positive number"),
    (["--max-lr", 1e-8], "--max-lr: 1e-08 is not above --min-lr"),
    (["--max-lr", "inf"], "--max-lr: inf is not above --min-lr"),
    (["--min-lr", "nan"], "--min-lr: nan is not a positive number"),
    (["--steps", 19], "--steps: 19 steps are too few"),
    (["--smoothing", 1], "--smoothing: 1.0 is outside [0, 1)"),
    (["--smoothing", -0.1], "--smoothing: -0.1 is outside [0, 1)"),
    (["--diverge", 1], "--diverge: 1.0 is not a finite number above 1"),
    (["--steps", "many"], "Invalid value for '--steps'"),
    (["--set", "optimizer.lr=-1"], "optimizer.lr"),
    (["--write", "EXISTING"], "the file exists; choose another name, or pass --force"),
    (["--write", "NO_DIR/out.yaml"], "its directory does not exist"),
])
def test_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, expected):
    existing = tmp_path / "existing.yaml"
    existing.write_text("keep me\n")
    args = [str(existing) if a == "EXISTING" else str(tmp_path / a) if str(a).startswith("NO_DIR") else a for a in args]
    spec = spec_file(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(spec, "--runs-dir", tmp_path / "runs", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert existing.read_text() == "keep me\n"


def test_no_suggestion_is_said_and_writes_no_spec(tmp_path):
    """A range that starts where the loss already explodes stops before the suggestion's window: the
    directory records the attempt, no spec is written, the exit code is 1 and the message says why."""
    out = tmp_path / "suggested.yaml"
    result = invoke(spec_file(tmp_path), "--runs-dir", tmp_path / "runs", "--min-lr", 1e3, "--max-lr", 1e9,
                    "--write", out, "--quiet")
    assert result.exit_code == 1, result.output
    assert "not written" in result.stderr and "no suggestion" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    summary = json.loads((the_run(tmp_path / "runs") / "summary.json").read_text())
    assert summary["suggested_lr"] is None and summary["stopped_early"] and summary["steps_run"] <= SKIP_BEGIN + SKIP_END
