"""`lrdecay plot`: the figures show exactly the CSVs' values, labelled by what differs, written
deterministically; bad input is one line, exit 2, and nothing written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import read_csv
from lrdecay_cli.output import plot
from lrdecay_cli.rundir.read import collect

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sweep_figures(finished_sweep):
    """The figures of the whole finished sweep (3 methods x 2 seeds), built once, nothing saved."""
    return plot.figures(collect([finished_sweep]))


def trials_by_method(sweep: Path) -> dict[str, list[Path]]:
    methods: dict[str, list[Path]] = {}
    for trial in sorted(p for p in sweep.iterdir() if p.name.startswith("t")):
        methods.setdefault(collect([trial])[0].config["schedule.name"], []).append(trial)
    return methods


def line(ax, label: str):
    (found,) = [ln for ln in ax.lines if ln.get_label() == label]
    return found


def band(ax, label: str, xs) -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper edge of a fill_between band at each x (independent of the path's vertex order)."""
    (found,) = [c for c in ax.collections if c.get_label() == f"{label} band"]
    vertices = np.concatenate([p.vertices for p in found.get_paths()])
    low = [vertices[np.isclose(vertices[:, 0], x), 1].min() for x in xs]
    high = [vertices[np.isclose(vertices[:, 0], x), 1].max() for x in xs]
    return np.array(low), np.array(high)


def column(path: Path, name: str) -> np.ndarray:
    return np.array([float(row[name]) for row in read_csv(path)])


def boundaries(ax) -> list[float]:
    """The x of the grey epoch-boundary lines (axvline: two points at one x)."""
    return [ln.get_xdata()[0] for ln in ax.lines if len(ln.get_xdata()) == 2 and len(set(ln.get_xdata())) == 1]


def curves(ax) -> list:
    """The data lines of an axes, without the epoch boundaries."""
    return [ln for ln in ax.lines if not (len(ln.get_xdata()) == 2 and len(set(ln.get_xdata())) == 1)]


def legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def assert_clean_failure(result, expected: str, *untouched: Path):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert result.stdout == ""
    for path in untouched:
        assert not path.exists(), path


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_every_figure_in_every_format_and_the_same_bytes_twice(cli, finished_sweep, tmp_path, fmt):
    run = shutil.copytree(finished_sweep / "t000", tmp_path / "run")
    first = cli("plot", run, "--format", fmt)
    assert first.exit_code == 0, first.output
    assert first.stdout.split() == [str(run / "plots" / f"{name}.{fmt}") for name in plot.FIGURES]
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(f"{name}.{fmt}" for name in plot.FIGURES)
    assert cli("plot", run, "--format", fmt, "--out", tmp_path / "again").exit_code == 0
    head = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[fmt]
    for name in plot.FIGURES:
        data = (run / "plots" / f"{name}.{fmt}").read_bytes()
        assert data.startswith(head)
        assert data == (tmp_path / "again" / f"{name}.{fmt}").read_bytes()


def test_a_sweep_goes_to_its_plots_dir_as_pngs_of_their_size_not_blank(cli, finished_sweep, tmp_path):
    from PIL import Image

    sweep = shutil.copytree(finished_sweep, tmp_path / "sweep")
    result = cli("plot", sweep)
    assert result.exit_code == 0, result.output
    for name in plot.FIGURES:
        image = np.asarray(Image.open(sweep / "plots" / f"{name}.png").convert("RGB"))
        size = plot.OVERVIEW_SIZE if name == "overview" else plot.SIZE
        assert image.shape == (size[1] * plot.DPI, size[0] * plot.DPI, 3)
        assert image.var() > 0
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20, name
    assert not any((trial / "plots").exists() for trial in sweep.glob("t*"))


def test_seed_groups_are_the_mean_of_their_runs_with_a_min_max_band(finished_sweep, sweep_figures):
    lr_ax = sweep_figures.figures["lr"].axes[0]
    loss_ax = sweep_figures.figures["loss"].axes[0]
    acc_ax = sweep_figures.figures["accuracy"].axes[0]
    for method, trials in trials_by_method(finished_sweep).items():
        assert len(trials) == 2
        lrs = np.stack([column(t / "lr.csv", "lr") for t in trials])
        x, y = line(lr_ax, method).get_xydata().T  # a fixed schedule: both seeds' LRs are one curve
        np.testing.assert_allclose(x, column(trials[0] / "lr.csv", "step") / 25)  # epochs, from the steps
        np.testing.assert_array_equal(lrs[0], lrs[1])
        np.testing.assert_array_equal(y, lrs[0])
        assert not [c for c in lr_ax.collections if c.get_label() == f"{method} band"]
        for ax, name in ((loss_ax, "train_loss"), (loss_ax, "val_loss"), (acc_ax, "train_acc"), (acc_ax, "val_acc")):
            values = np.stack([column(t / "metrics.csv", name) for t in trials])
            label = f"{method} {'train' if name.startswith('train') else 'val'}"
            x, y = line(ax, label).get_xydata().T
            assert list(x) == [1.0, 2.0, 3.0]
            np.testing.assert_allclose(y, values.mean(axis=0), rtol=1e-12)
            np.testing.assert_allclose(band(ax, label, x), (values.min(axis=0), values.max(axis=0)), rtol=1e-12)


def test_std_band_and_no_band(finished_sweep):
    trials = trials_by_method(finished_sweep)["cosine"]
    runs = collect(trials)
    values = np.stack([column(t / "metrics.csv", "val_loss") for t in trials])
    ax = plot.figures(runs, band="std").figures["loss"].axes[0]
    mean, std = values.mean(axis=0), values.std(axis=0, ddof=1)
    label = line(ax, next(ln.get_label() for ln in ax.lines if ln.get_label().endswith(" val"))).get_label()
    np.testing.assert_allclose(band(ax, label, [1, 2, 3]), (mean - std, mean + std), rtol=1e-12)
    assert len(plot.figures(runs, band="none").figures["loss"].axes[0].collections) == 0


def test_overview_shares_epochs_and_puts_lr_at_step_over_steps_per_epoch(finished_sweep, sweep_figures):
    lr_ax, loss_ax, acc_ax = sweep_figures.figures["overview"].axes[:3]
    assert lr_ax.get_shared_x_axes().joined(lr_ax, acc_ax)
    spe = json.loads((finished_sweep / "t000" / "summary.json").read_text())["steps_per_epoch"]
    assert spe == 25
    x = line(lr_ax, "constant").get_xydata()[:, 0]
    np.testing.assert_allclose(x, np.arange(75) / 25)
    np.testing.assert_array_equal(line(loss_ax, "step val").get_xydata()[:, 0], [1, 2, 3])
    assert acc_ax.get_xlabel() == "epoch" and lr_ax.get_ylabel() == "learning rate"


def test_a_single_run_is_its_csv_with_epoch_boundaries(finished_sweep):
    run = finished_sweep / "t000"
    figs = plot.figures(collect([run])).figures
    ax = figs["lr"].axes[0]
    (curve,) = curves(ax)
    np.testing.assert_array_equal(curve.get_xydata()[:, 1], column(run / "lr.csv", "lr"))
    assert boundaries(ax) == [1, 2]  # the x axis counts epochs, as every panel's does
    assert len(figs["loss"].axes[0].collections) == 0
    loss_ax = figs["loss"].axes[0]
    np.testing.assert_array_equal(line(loss_ax, "tiny val").get_xydata()[:, 1], column(run / "metrics.csv", "val_loss"))
    steps = line(loss_ax, "tiny train, per step").get_xydata()  # lr.csv's loss, each at the steps done with it
    np.testing.assert_array_equal(steps[:, 1], column(run / "lr.csv", "loss"))
    np.testing.assert_allclose(steps[:, 0], (column(run / "lr.csv", "step") + 1) / 25)
    assert steps[24, 0] == 1.0 and "train, per step" in legend_texts(figs["loss"])
    assert ax.get_xlabel() == "epoch" and "%" in figs["accuracy"].axes[0].get_yticklabels()[1].get_text()


def test_labels_are_the_fields_that_differ_not_directory_names(sweep_figures):
    for name, fig in sweep_figures.figures.items():
        texts = legend_texts(fig)
        assert {"constant", "step", "cosine"} <= set(texts), (name, texts)
        assert not any("t00" in text for text in texts)
        assert all("t00" not in ax.get_title() for ax in fig.axes)


def test_log_gives_a_log_lr_axis(cli, finished_sweep, tmp_path):
    figs = plot.figures(collect([finished_sweep]), log=True).figures
    assert figs["lr"].axes[0].get_yscale() == "log"
    assert figs["overview"].axes[0].get_yscale() == "log"
    assert figs["overview"].axes[1].get_yscale() == "linear"
    assert cli("plot", finished_sweep / "t001", "--log", "lr,loss", "--out", tmp_path / "log").exit_code == 0


def test_epoch_boundaries_only_when_every_run_has_the_same_epoch_length(finished_sweep, tmp_path):
    other = shutil.copytree(finished_sweep / "t001", tmp_path / "other")
    summary = json.loads((other / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "steps_per_epoch": 30}))
    ax = plot.figures(collect([finished_sweep / "t000", other])).figures["lr"].axes[0]
    assert not boundaries(ax) and len(curves(ax)) == 2


def test_a_diverged_run_is_drawn_to_where_it_stopped_and_marked(cli, finished_sweep, tmp_path):
    run = shutil.copytree(finished_sweep / "t000", tmp_path / "diverged")
    lr_rows = (run / "lr.csv").read_text().splitlines()[:32]  # header + steps 0..30
    lr_rows[-1] = lr_rows[-1].rsplit(",", 1)[0] + ",nan"  # step 30's loss, as a run that diverged there writes it
    (run / "lr.csv").write_text("\n".join(lr_rows) + "\n")
    (run / "metrics.csv").write_text("\n".join((run / "metrics.csv").read_text().splitlines()[:2]) + "\n")
    summary = json.loads((run / "summary.json").read_text())
    summary.update(status="diverged", diverged={"step": 30, "epoch": 2, "lr": 0.1, "loss": "nan"})
    (run / "summary.json").write_text(json.dumps(summary))
    figs = plot.figures(collect([run])).figures
    (mark,) = [ln for ln in figs["lr"].axes[0].lines if ln.get_label().endswith(" diverged")]
    assert mark.get_xydata().tolist() == [[30 / 25, float(lr_rows[-1].split(",")[1])]]
    (mark,) = [ln for ln in figs["overview"].axes[0].lines if ln.get_label().endswith(" diverged")]
    assert mark.get_xydata()[0, 0] == pytest.approx(30 / 25)
    steps = line(figs["loss"].axes[0], "tiny train, per step").get_xydata()  # steps 0..29: the nan is left out
    assert len(steps) == 30 and np.isfinite(steps).all() and steps[-1, 0] == 30 / 25
    assert cli("plot", run, "--out", tmp_path / "figs").exit_code == 0


def test_a_run_without_a_finished_epoch_gets_its_lr_curve_and_a_note(cli, finished_sweep, tmp_path):
    run = shutil.copytree(finished_sweep / "t000", tmp_path / "early")
    (run / "lr.csv").write_text("\n".join((run / "lr.csv").read_text().splitlines()[:11]) + "\n")
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text().splitlines()[0] + "\n")
    result = cli("plot", run)
    assert result.exit_code == 0, result.output
    assert "note: loss shows only the per-step training loss; accuracy" in result.stderr
    assert "no run has finished an epoch" in result.stderr
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(f"{n}.png" for n in plot.FIGURES)
    figs = plot.figures(collect([run])).figures
    assert len(line(figs["lr"].axes[0], "tiny").get_xydata()) == 10
    assert len(line(figs["loss"].axes[0], "tiny train, per step").get_xydata()) == 10  # its steps' losses, alone
    assert figs["accuracy"].axes[0].texts[0].get_text() == "no finished epoch yet"
    without_losses = shutil.copytree(run, tmp_path / "older")  # written before lr.csv had the loss
    (without_losses / "lr.csv").write_text("".join(",".join(row.split(",")[:2]) + "\n"
                                                    for row in (run / "lr.csv").read_text().splitlines()))
    result = cli("plot", without_losses)
    assert result.exit_code == 0 and "note: loss, accuracy and the lower panels" in result.stderr
    assert plot.figures(collect([without_losses])).figures["loss"].axes[0].texts[0].get_text() == "no finished epoch yet"


def test_a_run_with_nothing_recorded_writes_nothing(cli, finished_sweep, tmp_path):
    run = shutil.copytree(finished_sweep / "t000", tmp_path / "fresh")
    (run / "lr.csv").unlink()
    (run / "metrics.csv").unlink()
    result = cli("plot", run)
    assert result.exit_code == 0, result.output
    assert "note: nothing to plot yet" in result.stderr and result.stdout == ""
    assert not (run / "plots").exists()


def test_bad_input_is_one_line_exit_2_and_nothing_written(cli, finished_sweep, tmp_path):
    run = finished_sweep / "t000"
    out = tmp_path / "out"
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    assert_clean_failure(cli("plot", not_a_run, "--out", out), "not a run or sweep directory", out)
    assert_clean_failure(cli("plot", not_a_run), "not a run or sweep directory", not_a_run / "plots")
    assert_clean_failure(cli("plot", tmp_path / "missing", "--out", out), "no such directory", out)
    assert_clean_failure(cli("plot", run, "--format", "jpg", "--out", out), "Invalid value for '--format': 'jpg' is not one of 'png', 'svg', 'pdf'", out)
    assert_clean_failure(cli("plot", run, "--band", "iqr", "--out", out), "Invalid value for '--band': 'iqr' is not one of 'minmax', 'std', 'none'", out)
    assert_clean_failure(cli("plot", run, finished_sweep / "t001"), "--out", run / "plots")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_clean_failure(cli("plot", run, "--out", a_file), "is a file", out)
    assert_clean_failure(cli("plot", run, "--out", a_file / "below"), "lies below the file", out)
    assert a_file.read_text() == "x"
    assert not (run / "plots").exists() and not (finished_sweep / "plots").exists()


def test_a_torn_csv_names_the_file_and_line(cli, finished_sweep, tmp_path):
    sweep = shutil.copytree(finished_sweep, tmp_path / "sweep")
    lr_csv = sweep / "t003" / "lr.csv"
    lines = lr_csv.read_text().splitlines()
    lr_csv.write_text("\n".join(lines[:40] + ["3"]) + "\n")  # a row cut by a kill mid-write
    assert_clean_failure(cli("plot", sweep), f"{lr_csv}:41: torn or malformed row", sweep / "plots")


def test_plot_never_imports_torch(finished_sweep, tmp_path):
    code = ("import sys; from typer.testing import CliRunner; from lrdecay_cli.cli import app; "
            f"r = CliRunner().invoke(app, ['plot', {str(finished_sweep)!r}, '--out', {str(tmp_path / 'figs')!r}]); "
            "assert r.exit_code == 0, r.output; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "figs" / "overview.png").is_file()


def test_a_seed_groups_lr_is_its_runs_own_curves_and_the_band_legend_only_where_a_band_is(finished_sweep, tmp_path):
    """Plateau-like runs that cut the LR at different steps: each run's own LR is drawn (thin), not a
    mean no run used, and the LR panel's legend names no band; the loss panel's band stays."""
    trials = [shutil.copytree(t, tmp_path / t.name) for t in trials_by_method(finished_sweep)["constant"]]
    rows = read_csv(trials[1] / "lr.csv")
    with (trials[1] / "lr.csv").open("w") as f:
        f.write("step,lr\n" + "".join(f"{r['step']},{float(r['lr']) * (0.3 if int(r['step']) >= 40 else 1)!r}\n"
                                      for r in rows))
    figs = plot.figures(collect(trials))
    lr_ax = figs.figures["lr"].axes[0]
    drawn = sorted((tuple(ln.get_ydata()) for ln in curves(lr_ax)), key=lambda y: y[-1])
    assert drawn == sorted((tuple(column(t / "lr.csv", "lr")) for t in trials), key=lambda y: y[-1])
    assert not lr_ax.collections and "min to max over seeds" not in legend_texts(figs.figures["lr"])
    loss_ax = figs.figures["loss"].axes[0]
    assert loss_ax.collections and "min to max over seeds" in legend_texts(figs.figures["loss"])


def test_every_panel_against_steps_and_log_loss(finished_sweep):
    runs = collect(trials_by_method(finished_sweep)["step"])
    figs = plot.figures(runs, x="step", log=frozenset({"lr", "loss"}))
    lr_ax, loss_ax, _ = figs.figures["overview"].axes[:3]
    (val,) = [ln for ln in loss_ax.lines if ln.get_label().endswith("val")]
    np.testing.assert_array_equal(val.get_xydata()[:, 0], [25, 50, 75])
    assert lr_ax.get_lines()[0].get_xdata()[-1] == 74 and figs.figures["lr"].axes[0].get_xlabel() == "optimizer step"
    assert lr_ax.get_yscale() == "log" and loss_ax.get_yscale() == "log"
    assert plot.figures(runs).figures["loss"].axes[0].get_yscale() == "linear"


def test_a_seed_groups_per_step_loss_is_the_mean_of_its_runs_without_a_band(finished_sweep, sweep_figures):
    trials = trials_by_method(finished_sweep)["cosine"]
    for fig, ax_number in (("loss", 0), ("overview", 1)):
        ax = sweep_figures.figures[fig].axes[ax_number]
        steps = line(ax, "cosine train, per step").get_xydata()
        mean = np.mean([column(t / "lr.csv", "loss") for t in trials], axis=0)
        np.testing.assert_allclose(steps[:, 1], mean, rtol=1e-12)
        np.testing.assert_allclose(steps[:, 0], np.arange(1, 76) / 25)
        assert line(ax, "cosine train, per step").get_linewidth() < line(ax, "cosine train").get_linewidth()
        assert not [c for c in ax.collections if c.get_label() == "cosine train, per step band"]
