"""The catalogue of bad input through the command line: every case exits 2 with one line on stderr
that names the field, file or option at fault, prints nothing on stdout, shows no traceback, and
leaves the file tree exactly as it was (no run or sweep directory, no plots, no half-written file).

Loader-level cases (every message of the spec schema) are in test_spec.py; this file checks the
whole path from argv to exit code, for every command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import TINY
from lrdecay_cli.config.spec_file import merge_sections


@dataclass
class Bad:
    argv: list[str]
    """Command line; {spec} {sweep} {runs} {tmp} {run} {file} are filled in."""
    expected: str
    """A part of the one error line: the field, option or file at fault and what is wrong."""
    spec: str | dict | None = None
    """spec.yaml: raw text, or changes merged into the tiny spec."""
    sweep: dict | None = None
    """sweep.yaml: a sweep over the tiny spec with these keys."""
    files: dict[str, str] = field(default_factory=dict)
    study: dict | None = None
    """study.yaml: a valid study of the tiny spec with these keys changed."""


STUDY = {"name": "bad", "base": TINY, "methods": [{"schedule": {"name": "constant"}}, {"schedule": {"name": "cosine"}}],
         "lrs": [0.01, 0.1], "budgets": [1, 2]}


CATALOGUE: dict[str, Bad] = {
    # --- train: the spec file itself
    "yaml syntax": Bad(["train", "{spec}"], "YAML syntax error at line 2, column 1", "optimizer: {lr: 0.1\n"),
    "empty file": Bad(["train", "{spec}"], "the spec is empty", ""),
    "a list": Bad(["train", "{spec}"], "must be a mapping", "- name: x\n"),
    "a scalar": Bad(["train", "{spec}"], "must be a mapping", "42\n"),
    "duplicate key": Bad(["train", "{spec}"], "duplicate key 'name' at line 2", "name: a\nname: b\n"),
    "alias bomb": Bad(["train", "{spec}"], "more than 32 YAML aliases",
                      "a: &a [1, 2]\n" + "".join(f"{k}: &{k} [*{p}, *{p}, *{p}]\n"
                                                 for p, k in zip("abcdefghijklm", "bcdefghijklmn"))),
    "unknown key": Bad(["train", "{spec}"], "train.epoch: unknown key 'epoch'; did you mean 'epochs'?",
                       {"train": {"epoch": 3}}),
    "unknown section": Bad(["train", "{spec}"], "traine", "traine: {epochs: 1}\n"),
    "unknown model": Bad(["train", "{spec}"], "model.name: unknown model 'resnet'; valid names: mlp, cnn",
                         "model: {name: resnet}\n"),
    "unknown optimizer": Bad(["train", "{spec}"], "optimizer.name", "optimizer: {name: lamb}\n"),
    "unknown schedule": Bad(["train", "{spec}"], "schedule.name: unknown schedule method",
                            "schedule: {name: cosine_decay_x}\n"),
    "unknown dataset": Bad(["train", "{spec}"], "data.dataset: must be 'mnist'", "data: {dataset: fashion}\n"),
    "lr zero": Bad(["train", "{spec}"], "optimizer.lr: must be greater than 0", {"optimizer": {"lr": 0}}),
    "lr negative": Bad(["train", "{spec}"], "optimizer.lr: must be greater than 0", "optimizer: {name: adam, lr: -1e-3}\n"),
    "lr a word": Bad(["train", "{spec}"], "optimizer.lr: must be a valid number", "optimizer: {lr: fast}\n"),
    "lr nan": Bad(["train", "{spec}"], "optimizer.lr: must be a finite number", "optimizer: {lr: .nan}\n"),
    "lr inf": Bad(["train", "{spec}"], "optimizer.lr: must be a finite number", "optimizer: {lr: .inf}\n"),
    "lr huge": Bad(["train", "{spec}"], "optimizer.lr: must be a finite number", "optimizer: {lr: 1.0e999}\n"),
    "epochs zero": Bad(["train", "{spec}"], "train.epochs: must be greater than or equal to 1", {"train": {"epochs": 0}}),
    "epochs huge": Bad(["train", "{spec}"], "train.epochs: must be less than or equal to 100000",
                       {"train": {"epochs": 10**12}}),
    "epochs a float": Bad(["train", "{spec}"], "train.epochs", {"train": {"epochs": 2.5}}),
    "batch zero": Bad(["train", "{spec}"], "train.batch_size: must be greater than or equal to 1",
                      {"train": {"batch_size": 0}}),
    "batch beyond the data": Bad(["train", "{spec}"], "train.batch_size (100000) is larger than the 2500 training images",
                                 {"train": {"batch_size": 100000}}),
    "seed negative": Bad(["train", "{spec}"], "seed: must be greater than or equal to 0", {"seed": -1}),
    "dropout one": Bad(["train", "{spec}"], "model.dropout: must be less than 1", {"model": {"dropout": 1.0}}),
    "name escapes": Bad(["train", "{spec}"], "name", {"name": "../escape"}),
    "device gpu": Bad(["train", "{spec}"], "train.device", {"train": {"device": "gpu"}}),
    "section a list": Bad(["train", "{spec}"], "optimizer", "optimizer: [sgd, 0.1]\n"),
    "decay_rate zero": Bad(["train", "{spec}"], "schedule.decay_rate: must be greater than 0",
                           {"schedule": {"decay_rate": 0}}),
    "decay_steps zero": Bad(["train", "{spec}"], "schedule.decay_steps: must be greater",
                            {"schedule": {"decay_steps": 0}}),
    "param of another method": Bad(["train", "{spec}"], "schedule.gamma: unknown key 'gamma'",
                                   {"schedule": {"gamma": 0.5}}),
    "lr underflows": Bad(["train", "{spec}"], "spec.yaml: schedule: the LR underflows",
                         {"schedule": {"decay_steps": 1, "decay_rate": 1e-30}}),
    "two warmups on keras cosine": Bad(["train", "{spec}"], "cosine has its own warmup",
                                       {"schedule": {"name": "cosine", "warmup_target": 0.2, "warmup_steps": 5,
                                                     "warmup": {"steps": 5}}}),
    "cosine warmup longer than the run": Bad(["train", "{spec}"], "spec.yaml: schedule.warmup_steps: warmup_steps (500)",
                                             {"schedule": {"name": "cosine", "warmup_target": 0.2, "warmup_steps": 500}}),
    "step_size and step_fraction": Bad(["train", "{spec}"], "spec.yaml: schedule: give step_size or step_fraction, "
                                       "not both", {"schedule": {"name": "step", "step_size": 2, "step_fraction": 0.5}}),
    "neither milestones nor fractions": Bad(["train", "{spec}"], "spec.yaml: schedule: give milestones (counts) or "
                                            "milestone_fractions", {"schedule": {"name": "multistep"}}),
    "milestone fraction of 1": Bad(["train", "{spec}"], "schedule.milestone_fractions.0: must be less than 1",
                                   {"schedule": {"name": "multistep", "milestone_fractions": [1.0]}}),
    "milestone fractions collapse": Bad(["train", "{spec}"], "spec.yaml: schedule.milestone_fractions: "
                                        "milestone_fractions [0.6, 0.7] give the milestones [1, 1] in a run of 2 epochs",
                                        {"schedule": {"name": "multistep", "milestone_fractions": [0.6, 0.7]}}),
    "val_size over limit": Bad(["train", "{spec}"], "val_size", {"data": {"limit": 1000, "val_size": 5000}}),
    "plateau on val_loss without a validation set": Bad(
        ["train", "{spec}"], "schedule.monitor is val_loss but data.val_size is 0",
        {"data": {"val_size": 0}, "schedule": {"name": "plateau"}}),
    "plateau on val_acc, val_size 0 by --set": Bad(
        ["train", "{spec}", "--set", "data.val_size=0"],
        "--set data.val_size=0: schedule.monitor is val_acc but data.val_size is 0, so there is no validation "
        "set to measure it on; also --set schedule.monitor=train_loss", {"schedule": {"name": "plateau", "monitor": "val_acc"}}),
    "a decay with a schedule-free optimizer": Bad(
        ["train", "{spec}"], "spec.yaml: schedule.name is cosine but optimizer.name is sgd_schedulefree, which averages "
        "its iterates in place of a decay: its schedule must be constant (a warmup allowed); set schedule.name: constant",
        {"optimizer": {"name": "sgd_schedulefree"}, "schedule": {"name": "cosine"}}),
    "a schedule-free optimizer by --set on a decay": Bad(
        ["train", "{spec}", "--set", "optimizer.name=adamw_schedulefree"],
        "--set optimizer.name=adamw_schedulefree: schedule.name is exponential but optimizer.name is "
        "adamw_schedulefree", {}),
    "unknown normalization": Bad(["train", "{spec}"], "data.normalize: must be 'standard' or 'unit'",
                                 {"data": {"normalize": "minmax"}}),
    "missing spec file": Bad(["train", "{tmp}/nope.yaml"], "nope.yaml: no such file"),
    "spec is a directory": Bad(["train", "{tmp}"], "directory"),
    "no spec": Bad(["train"], "missing SPEC"),
    # --- train: the command line
    "set without =": Bad(["train", "{spec}", "--set", "optimizer.lr"], "cannot parse --set 'optimizer.lr'", {}),
    "set unknown path": Bad(["train", "{spec}", "--set", "train.epoch=2"], "no field 'train.epoch'; did you mean 'epochs'?", {}),
    "set bad yaml": Bad(["train", "{spec}", "--set", "optimizer.lr={"], "cannot parse the value of --set", {}),
    "set wrong type": Bad(["train", "{spec}", "--set", "train.epochs=many"],
                          "--set train.epochs=many: train.epochs: must be a valid integer", {}),
    "set limit below the validation split": Bad(["train", "{spec}", "--set", "data.limit=400"],
                                                "--set data.limit=400: data: val_size (500) must be smaller than "
                                                "data.limit (400); also --set data.val_size=40", {}),
    "grid value that makes a trial invalid": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--grid",
                                                  "data.limit=3000,400"],
                                                 "--grid data.limit=400: data: val_size (500) must be smaller than "
                                                 "data.limit (400); change --grid data.limit=400, or set data.val_size: 40",
                                                 sweep={}),
    "set into a scalar": Bad(["train", "{spec}", "--set", "name.x=1"], "'name' is not a section", {}),
    "runs dir is a file": Bad(["train", "{spec}", "--runs-dir", "{file}"], "is a file, not a directory", {}),
    "runs dir under a file": Bad(["train", "{spec}", "--runs-dir", "{file}/sub"], "is a file, not a directory", {}),
    "unknown option": Bad(["train", "{spec}", "--epochs", "3"], "No such option: --epochs; see lrdecay train --help", {}),
    "unknown command": Bad(["trian", "{spec}"], "No such command 'trian'. Did you mean 'train'?; see lrdecay --help", {}),
    "resume not a run": Bad(["train", "--resume", "{tmp}"], "not a run directory with a checkpoint"),
    "resume changed spec": Bad(["train", "{spec}", "--resume", "{run}"], "differs from the run's config.yaml in",
                               {"optimizer": {"lr": 0.05}}),
    # --- sweep
    "sweep grid without values": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--grid", "optimizer.lr"],
                                     "cannot parse --grid", sweep={}),
    "sweep grid unknown field": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--grid", "optimizer.lrr=0.1,0.2"],
                                    "no field 'optimizer.lrr'", sweep={}),
    "sweep grid bad value": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--grid", "optimizer.lr=-1,0.1"],
                                "optimizer.lr: must be greater than 0", sweep={}),
    "sweep seeds a word": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--seeds", "three"], "cannot parse --seeds",
                              sweep={}),
    "sweep unknown executor": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--executor", "gpus"],
                                  "Invalid value for '--executor': 'gpus' is not one of 'auto', 'sequential'", sweep={}),
    "sweep zero workers": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}", "--workers", "0"], "'--workers'", sweep={}),
    "sweep empty grid": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}"], "grid.optimizer.lr has no values",
                            sweep={"grid": {"optimizer.lr": []}}),
    "sweep zero seeds": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}"], "seeds must be a positive count",
                            sweep={"seeds": 0}),
    "sweep range upside down": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}"], "low < high",
                                   sweep={"random": {"n": 2, "fields": {"optimizer.lr": {"uniform": [1, 0]}}}}),
    "sweep unknown metric": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}"], "metric", sweep={"metric": "accuracy"}),
    "sweep trial lr underflows": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}"],
                                     "(trial 1: schedule.decay_rate=1e-90, seed=0): schedule: the LR underflows",
                                     sweep={"grid": {"schedule.decay_rate": [0.5, 1e-90]}}),
    "sweep dry run of an underflowing trial": Bad(["sweep", "{sweep}", "--dry-run"], "the LR underflows",
                                                  sweep={"grid": {"schedule.decay_rate": [1e-90]}}),
    "schedule preview underflows": Bad(["schedule", "{spec}"], "spec.yaml: schedule: the LR underflows",
                                       {"schedule": {"decay_steps": 1, "decay_rate": 1e-30}}),
    "sweep bad variant": Bad(["sweep", "{sweep}", "--runs-dir", "{runs}"], "optimizer.lr: must be greater than 0",
                             sweep={"variants": [{"optimizer": {"lr": 0}}]}),
    "sweep a list": Bad(["sweep", "{tmp}/list.yaml", "--runs-dir", "{runs}"], "must be a mapping",
                        files={"list.yaml": "- 1\n"}),
    "sweep resume not a sweep": Bad(["sweep", "--resume", "{tmp}"], "not a sweep directory"),
    "sweep resume with a grid": Bad(["sweep", "--resume", "{tmp}", "--grid", "optimizer.lr=0.1"],
                                    "--resume takes only the sweep directory"),
    "sweep runs dir is a file": Bad(["sweep", "{sweep}", "--runs-dir", "{file}"], "is a file, not a directory", sweep={}),
    # --- schedule, schedules
    "schedule steps a word": Bad(["schedule", "{spec}", "--steps", "abc"], "'--steps'", {}),
    "schedule bad format": Bad(["schedule", "{spec}", "--format", "svgz"], "Invalid value for '--format': 'svgz' is not one of 'csv', 'json', 'plot'", {}),
    "schedule png in a missing dir": Bad(["schedule", "{spec}", "--png", "{tmp}/missing/lr.png"], "--png", {}),
    "schedules unknown method": Bad(["schedules", "exponental"], "did you mean 'exponential'"),
    # --- plot, compare: directories that are not runs, bad options
    "plot not a run": Bad(["plot", "{tmp}"], "not a run or sweep directory"),
    "plot missing dir": Bad(["plot", "{tmp}/nowhere"], "no such directory"),
    "plot bad format": Bad(["plot", "{run}", "--format", "gif", "--out", "{tmp}/p"], "Invalid value for '--format': 'gif' is not one of 'png', 'svg', 'pdf'"),
    "plot bad band": Bad(["plot", "{run}", "--band", "iqr", "--out", "{tmp}/p"], "Invalid value for '--band': 'iqr' is not one of 'minmax', 'std', 'none'"),
    "plot several without out": Bad(["plot", "{run}", "{run}"], "--out"),
    "plot out is a file": Bad(["plot", "{run}", "--out", "{file}"], "--out"),
    "compare not a run": Bad(["compare", "{tmp}"], "not a run or sweep directory"),
    "compare bad metric": Bad(["compare", "{run}", "--metric", "accuracy"], "Invalid value for '--metric': 'accuracy' is not one of 'val_acc'"),
    "compare target above 1": Bad(["compare", "{run}", "--target", "1.5"], "--target"),
    "compare csv and markdown": Bad(["compare", "{run}", "--csv", "--markdown"], "--csv"),
    # --- study
    "study unknown key": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                             "study.yaml: budget: unknown key 'budget'; did you mean 'budgets'?", study={"budget": [1]}),
    "study no methods": Bad(["study", "{study}", "--runs-dir", "{runs}"], "methods: List should have at least 1 item",
                            study={"methods": []}),
    "study unknown method": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                "methods.1: schedule.name: unknown schedule method 'cosin'; did you mean 'cosine'?",
                                study={"methods": [{"schedule": {"name": "constant"}}, {"schedule": {"name": "cosin"}}]}),
    "study bad method parameter": Bad(["study", "{study}", "--runs-dir", "{runs}"], "methods.0: schedule.alpha",
                                      study={"methods": [{"schedule": {"name": "cosine", "alpha": -1.0}}]}),
    "study same method twice": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                   "methods.0 and methods.1 are both called 'cosine': give each a distinct label",
                                   study={"methods": [{"schedule": {"name": "cosine"}},
                                                      {"schedule": {"name": "cosine", "alpha": 0.1}}]}),
    "study method optimizer lr": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                     "methods.1.optimizer: a method's optimizer sets no lr: the study tunes it",
                                     study={"methods": [{"schedule": {"name": "constant"}},
                                                        {"schedule": {"name": "constant"},
                                                         "optimizer": {"name": "adam", "lr": 0.01}}]}),
    "study method unknown optimizer": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                          "methods.1: optimizer.name",
                                          study={"methods": [{"schedule": {"name": "constant"}},
                                                             {"schedule": {"name": "constant"},
                                                              "optimizer": {"name": "adma"}}]}),
    "study tunes the lr twice": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                    "methods.0.tune: 'optimizer.lr': tune a parameter of the method's schedule",
                                    study={"methods": [{"schedule": {"name": "constant"},
                                                        "tune": {"optimizer.lr": [0.1, 0.2]}}]}),
    "study tunes no such field": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                     "methods.0.tune.schedule.gama: the spec has no field 'schedule.gama'",
                                     study={"methods": [{"schedule": {"name": "step"},
                                                         "tune": {"schedule.gama": [0.1, 0.5]}}]}),
    "study tunes a bad value": Bad(["study", "{study}", "--runs-dir", "{runs}"], "schedule.gamma",
                                   study={"methods": [{"schedule": {"name": "step"},
                                                       "tune": {"schedule.gamma": [0.1, -2.0]}}]}),
    "study methods train the same": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                        "methods.0 and methods.1 train the very same runs",
                                        study={"methods": [{"schedule": {"name": "constant"}},
                                                           {"label": "sgd", "schedule": {"name": "constant"},
                                                            "optimizer": {"name": "sgd", "momentum": 0.9}}]}),
    "study lrs empty": Bad(["study", "{study}", "--runs-dir", "{runs}"], "lrs: give a list of initial LRs",
                           study={"lrs": []}),
    "study lr negative": Bad(["study", "{study}", "--runs-dir", "{runs}"], "initial LRs must be positive",
                             study={"lrs": [-0.1, 0.1]}),
    "study log range reversed": Bad(["study", "{study}", "--runs-dir", "{runs}"], "log_range needs 0 < low < high",
                                    study={"lrs": {"log_range": [1.0, 0.01], "count": 3}}),
    "study log range one lr": Bad(["study", "{study}", "--runs-dir", "{runs}"], "lrs: count: must be greater than or equal to 2",
                                  study={"lrs": {"log_range": [0.01, 1.0], "count": 1}}),
    "study budgets out of order": Bad(["study", "{study}", "--runs-dir", "{runs}"], "budgets must be epochs >= 1 in increasing order",
                                      study={"budgets": [4, 2]}),
    "study budget a word": Bad(["study", "{study}", "--runs-dir", "{runs}"], "budgets.0: must be a valid integer",
                               study={"budgets": ["one"]}),
    "study unknown metric": Bad(["study", "{study}", "--runs-dir", "{runs}"], "metric: must be 'best_val_acc'",
                                study={"metric": "test_acc"}),
    "study base missing": Bad(["study", "{study}", "--runs-dir", "{runs}"], "nope.yaml: no such file",
                              study={"base": "nope.yaml"}),
    "study schedule that does not fit a budget": Bad(
        ["study", "{study}", "--runs-dir", "{runs}"], "total_steps (50) is shorter than the run (80 steps)",
        study={"methods": [{"schedule": {"name": "one_cycle", "total_steps": 50}}]}),
    "study without a validation set": Bad(["study", "{study}", "--runs-dir", "{runs}"],
                                          "study.yaml: base: the base spec has no validation set (data.val_size: 0)",
                                          study={"base": merge_sections(TINY, {"data": {"val_size": 0}})}),
    "study resume not a study": Bad(["study", "--resume", "{tmp}"], "not a study directory (no study.yaml)"),
    "study not a mapping": Bad(["study", "{spec}", "--runs-dir", "{runs}"], "a study must be a mapping", "- 1\n"),
    "compare a study": Bad(["compare", "{tmp}"], "a study directory: its trials are in its tune/ and final/ sweeps",
                           files={"study.yaml": "name: s\n"}),
    # --- runs
    "runs missing dir": Bad(["runs", "{tmp}/nowhere"], "nowhere: no such directory; name the --runs-dir"),
    "runs dir is a file": Bad(["runs", "{file}"], "a-file: not a directory"),
    "runs of a run": Bad(["runs", "{run}"], "a run directory, not a runs directory; list the directory it is in"),
    "runs unknown status": Bad(["runs", "{tmp}", "--status", "done"],
                               "Invalid value for '--status': 'done' is not one of 'running', 'completed'"),
    "runs unknown format": Bad(["runs", "{tmp}", "--format", "json"], "Invalid value for '--format': 'json'"),
    # --- find-lr
    "find-lr max below min": Bad(["find-lr", "{spec}", "--min-lr", "1", "--max-lr", "0.1", "--runs-dir", "{runs}"],
                                 "--max-lr", {}),
    "find-lr too few steps": Bad(["find-lr", "{spec}", "--steps", "5", "--runs-dir", "{runs}"], "--steps", {}),
    "find-lr write over a file": Bad(["find-lr", "{spec}", "--write", "{file}", "--runs-dir", "{runs}"],
                                     "the file exists", {}),
    "find-lr bad spec": Bad(["find-lr", "{spec}", "--runs-dir", "{runs}"], "optimizer.lr", {"optimizer": {"lr": -1}}),
}


def fill(argv: list[str], paths: dict[str, Path]) -> list[str]:
    filled = []
    for arg in argv:
        for name, path in paths.items():
            arg = arg.replace("{" + name + "}", str(path))
        filled.append(arg)
    return filled


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content, and every directory: what a clean failure must not change."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        tree[rel] = path.read_bytes() if path.is_file() else b"<dir>"
    return tree


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    """A run directory with a checkpoint and an interrupted status, for the --resume cases."""
    import json

    from lrdecay_cli.config.spec_file import from_data
    from lrdecay_cli.training.loop import train

    result = train(from_data(merge_sections(TINY, {"train": {"epochs": 1}}), "tiny"), tmp_path_factory.mktemp("made"))
    summary = json.loads((result.path / "summary.json").read_text())
    summary["status"] = "interrupted"
    (result.path / "summary.json").write_text(json.dumps(summary))
    return result.path


@pytest.mark.parametrize("case", list(CATALOGUE.values()), ids=list(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, interrupted_run, case):
    paths = {"tmp": tmp_path, "runs": tmp_path / "runs", "spec": tmp_path / "spec.yaml",
             "sweep": tmp_path / "sweep.yaml", "study": tmp_path / "study.yaml", "file": tmp_path / "a-file", "run": interrupted_run}
    paths["file"].write_text("not a directory")
    if isinstance(case.spec, str):
        paths["spec"].write_text(case.spec)
    elif case.spec is not None:
        paths["spec"].write_text(yaml.safe_dump(merge_sections(TINY, case.spec)))
    if case.sweep is not None:
        paths["sweep"].write_text(yaml.safe_dump({"name": "bad", "base": TINY, **case.sweep}))
    if case.study is not None:
        paths["study"].write_text(yaml.safe_dump({**STUDY, **case.study}))
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    before, run_before = snapshot(tmp_path), snapshot(interrupted_run)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # commands that default to ./runs must not write there either
    try:
        result = cli(*fill(case.argv, paths))
    finally:
        os.chdir(cwd)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.expected in lines[0], lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert snapshot(tmp_path) == before and snapshot(interrupted_run) == run_before


def test_the_catalogue_is_large():
    assert len(CATALOGUE) >= 30
