"""Every spec in configs/ is documented, valid, and trains for one short epoch on a subset."""

import json
from pathlib import Path

import pytest

from conftest import run_dirs

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
FAMILIES = {"quickstart", "step", "exponential", "inverse_time", "plateau", "cosine", "cosine_restarts",
            "one_cycle", "warmup_cosine", "wsd"}


def test_one_spec_per_family():
    assert FAMILIES <= {c.stem for c in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_is_documented_and_trains(cli, tmp_path, config):
    assert config.read_text().startswith("# "), "each config opens with a comment on when to use it"
    short = ["--set", "data.limit=1500", "--set", "data.val_size=300", "--set", "train.epochs=1",
             "--set", "train.device=cpu"]
    result = cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet", *short)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 19
    preview = cli("schedule", config, "--steps", 19, *short)
    assert preview.stdout == (run / "lr.csv").read_text()


def test_the_readme_shows_the_committed_showcase():
    """`make showcase` rewrites docs/; the README must show that table, and the figure it links."""
    readme = (REPO / "README.md").read_text()
    table = (REPO / "docs" / "decay_methods.md").read_text().strip()
    assert table in readme
    assert "](docs/decay_methods/overview.png)" in readme and (REPO / "docs/decay_methods/overview.png").is_file()
