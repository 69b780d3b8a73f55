"""Limits on what the input may ask for, and the sweep's seeds and labels: explicit seeds win, a value
listed twice is refused, files / trials / steps / numbers are bounded, the whole-run schedule check
looks at a few LRs however long the run, and an edited sweep.yaml cannot relabel finished trials.

Every refusal is one line on stderr, exit 2, nothing on stdout and nothing written.
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY, read_csv
from lrdecay_cli.config import sweep_file
from lrdecay_cli.experiments import sweep as sweeps
from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.schedules.registry import Schedule, check_run
from lrdecay_cli.config.spec import Spec
from lrdecay_cli.config.spec_file import from_data, load
from lrdecay_cli.config.yaml_io import MAX_FILE_BYTES, MAX_NODES

BASE = {**TINY, "data": {"limit": 1500, "val_size": 300}, "model": {"name": "mlp", "hidden": [16]},
        "train": {**TINY["train"], "epochs": 1}}
"""1,200 training images, 19 steps: a trial in well under a second."""


def refused(out, line: str) -> None:
    """The CLI's answer is exactly `error: <line>`, one line, exit 2, nothing on stdout."""
    assert (out.exit_code, out.stdout, out.stderr) == (2, "", f"error: {line}\n"), out.output


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def write_sweep(tmp_path: Path, **sweep) -> Path:
    return write(tmp_path, yaml.safe_dump({"name": "s", "base": BASE, **sweep}), "sweep.yaml")


# ----------------------------------------------------------------------------- 1. seeds and repeats


@pytest.fixture(scope="module")
def seeded_sweep(tmp_path_factory) -> Path:
    """A trained sweep whose grid gives the seeds: 2 LRs x seeds 1, 2 (trained in a process of its own, so
    that nothing training sets for its process, such as flushing denormals, leaks into the tests)."""
    root = tmp_path_factory.mktemp("seeded")
    path = write_sweep(root, grid={"optimizer.lr": [0.05, 0.1], "seed": [1, 2]})
    done = subprocess.run([sys.executable, "-m", "lrdecay_cli", "sweep", str(path), "--runs-dir", str(root / "runs"),
                           "--quiet", "--executor", "sequential"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (sweep_dir,) = (root / "runs" / "sweeps").iterdir()
    return sweep_dir


def test_seeds_in_the_grid_are_the_trials_seeds(seeded_sweep):
    rows = read_csv(seeded_sweep / "results.csv")
    assert [(r["optimizer.lr"], r["seed"]) for r in rows] == [("0.05", "1"), ("0.05", "2"), ("0.1", "1"), ("0.1", "2")]
    assert [yaml.safe_load((seeded_sweep / r["trial"] / "config.yaml").read_text())["seed"] for r in rows] == [1, 2, 1, 2]
    board = read_csv(seeded_sweep / "leaderboard.csv")
    assert sorted(r["optimizer.lr"] for r in board) == ["0.05", "0.1"] and [r["n"] for r in board] == ["2", "2"]
    assert all(float(r["best_std"]) > 0 for r in board)  # two seeds that differ, not one run counted twice
    assert "seeds" not in yaml.safe_load((seeded_sweep / "sweep.yaml").read_text())


def test_seeds_from_variants_random_fields_and_the_base(tmp_path):
    def seeds(**sweep) -> list[int]:
        return [t.spec.seed for t in sweeps.plan(write_sweep(tmp_path, **sweep)).trials]

    assert seeds(variants=[{"seed": 5}, {"seed": 6, "optimizer": {"lr": 0.05}}]) == [5, 6]
    assert seeds(random={"n": 2, "fields": {"seed": [8, 9]}, "seed": 4}) == [8, 9]
    assert seeds(grid={"optimizer.lr": [0.05, 0.1]}) == [0, 0]  # the base's seed
    assert seeds(base={**BASE, "seed": 7}, grid={"optimizer.lr": [0.05, 0.1]}) == [7, 7]
    assert seeds(base={**BASE, "seed": 7}, seeds=2) == [0, 1]  # `seeds` repeats each trial with its seeds


@pytest.mark.parametrize("sweep,argv,where,what", [
    ({"grid": {"seed": [1, 2]}, "seeds": 3}, [], "{path}", "both seeds and grid.seed set the trials' seeds"),
    ({"variants": [{"seed": 1}, {"seed": 2}], "seeds": [0]}, [], "{path}", "both seeds and variants.0.seed set"),
    ({}, ["--grid", "seed=1,2", "--seeds", "2"], "--grid/--seeds", "both seeds and grid.seed set"),
    ({}, ["--grid", "optimizer.lr=0.1,0.1"], "--grid/--seeds", "grid.optimizer.lr lists 0.1 twice"),
    ({"grid": {"optimizer.lr": [0.1, 0.05, 0.1]}}, [], "{path}", "grid.optimizer.lr lists 0.1 twice"),
    ({"grid": {"model.hidden": [[8], [8]]}}, [], "{path}", "grid.model.hidden lists [8] twice"),
    ({"variants": [{"schedule": {"name": "step"}}, {"optimizer": {"lr": 0.05}}, {"schedule": {"name": "step"}}]}, [],
     "{path}", "variants.0 and variants.2 are the same, {'schedule': {'name': 'step'}}"),
    ({"random": {"n": 2, "fields": {"optimizer.lr": [0.1, 0.1]}}}, [], "{path}: random.fields",
     "optimizer.lr lists 0.1 twice"),
    ({}, ["--grid", "optimizer.lr=0.1", "--grid", "optimizer.lr=0.05"], "--grid", "optimizer.lr is given twice"),
])
def test_seeds_given_twice_and_repeated_values_are_refused(cli, tmp_path, sweep, argv, where, what):
    path = write_sweep(tmp_path, **sweep)
    out = cli("sweep", path, "--runs-dir", tmp_path / "runs", *argv)
    assert (out.exit_code, out.stdout) == (2, "") and out.stderr.count("\n") == 1, out.output
    assert out.stderr.startswith(f"error: {where.format(path=path)}: {what}")
    assert not (tmp_path / "runs").exists()


def test_sweep_yaml_re_expands_to_the_same_trials(tmp_path):
    for sweep in ({"grid": {"seed": [3, 1]}, "variants": [{"optimizer": {"lr": 0.05}}, {}]},
                  {"variants": [{"seed": 4}, {"seed": 2}]}, {"seeds": 2, "grid": {"optimizer.lr": [0.05, 0.1]}},
                  {"base": {**BASE, "seed": 9}}):
        plan = sweeps.plan(write_sweep(tmp_path, **sweep))
        again = write(tmp_path, sweep_file.resolved_yaml(plan.sweep, plan.base), "resolved.yaml")
        trials = sweeps.plan(again).trials
        assert [(t.fields, t.spec) for t in trials] == [(t.fields, t.spec) for t in plan.trials]
    assert [t.spec.seed for t in trials] == [9]


# ----------------------------------------------------------------------------- 2. files


def test_a_fifo_is_refused_before_it_is_opened(cli, tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)

    def unblock_an_open():  # what the old code needed to ever return: a writer on the other end
        time.sleep(2)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # nobody is reading, as it should be

    threading.Thread(target=unblock_an_open, daemon=True).start()
    for command in ("train", "schedule", "find-lr", "sweep"):
        refused(cli(command, fifo, "--runs-dir", tmp_path / "runs") if command != "schedule" else cli(command, fifo),
                f"{fifo}: is not a regular file (a FIFO, socket or device); name a YAML file on disk")
    assert not (tmp_path / "runs").exists()


def test_a_file_over_the_size_limit_is_refused(cli, tmp_path):
    spec = yaml.safe_dump(TINY)
    path = write(tmp_path, spec + "#" * (MAX_FILE_BYTES - len(spec)) + "\n")
    refused(cli("schedule", path), f"{path}: is larger than 1,000,000 bytes, the most a spec or sweep file may have; "
                                   "name the spec file (a spec is a few hundred bytes)")
    base = write(tmp_path, yaml.safe_dump({"name": "s", "base": path.name}), "sweep.yaml")
    refused(cli("sweep", base, "--dry-run"), f"{path}: is larger than 1,000,000 bytes, the most a spec or sweep file "
                                             "may have; name the spec file (a spec is a few hundred bytes)")
    path.write_text(spec + "#" * (MAX_FILE_BYTES - len(spec) - 1) + "\n")  # exactly the limit
    assert cli("schedule", path, "--steps", 2).exit_code == 0


@pytest.mark.parametrize("text,what", [
    ("optimizer: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 20 levels deep (line 1, column 31); "
                                                     "a spec nests a few sections; flatten it"),
    ("? [a, b]\n: 1\n", "a key is a list or a mapping (line 1, column 3); keys are plain names, e.g. optimizer:"),
    ("{name: x}: 1\n", "a key is a list or a mapping (line 1, column 1); keys are plain names, e.g. optimizer:"),
    ("schedule: {" + ", ".join(f"k{i}: 1" for i in range(MAX_NODES // 2)) + "}\n",
     "more than 100,000 values (line 1, column 538888); a spec holds a few dozen"),
])
def test_deep_nesting_complex_keys_and_too_many_values_are_one_line(cli, tmp_path, text, what):
    path = write(tmp_path, text)
    refused(cli("schedule", path), f"{path}: {what}")


# ----------------------------------------------------------------------------- 2. bounded work


@pytest.mark.parametrize("sweep,argv,line", [
    ({}, ["--seeds", "10001"], "--grid/--seeds: seeds must be a positive count (at most 10,000) or a list, got 10001; "
                               "fix the command line"),
    ({}, ["--seeds", "100000000"], "--grid/--seeds: seeds must be a positive count (at most 10,000) or a list, got "
                                   "100000000; fix the command line"),
    ({"grid": {"optimizer.lr": [0.01 * i for i in range(1, 102)], "optimizer.momentum": [0.001 * i for i in range(100)]}},
     [], "{path}: the sweep has 10,100 trials (variants x grid x random.n x seeds), more than 10,000; fix it in {path}"),
    ({"random": {"n": 5001, "fields": {"optimizer.lr": {"log_uniform": [0.01, 0.1]}}}}, ["--seeds", "2"],
     "--grid/--seeds: the sweep has 10,002 trials (variants x grid x random.n x seeds), more than 10,000; "
     "fix the command line"),
    ({"random": {"n": 100000000, "fields": {"optimizer.lr": {"log_uniform": [0.01, 0.1]}}}}, [],
     "{path}: random.n: must be less than or equal to 10000; fix it in {path}"),
])
def test_trials_are_counted_and_bounded_before_any_is_built(cli, tmp_path, sweep, argv, line):
    path = write_sweep(tmp_path, **sweep)
    refused(cli("sweep", path, "--dry-run", *argv), line.format(path=path))
    assert sweep_file.SweepSpec(seeds=10_000).size() == sweep_file.SweepSpec(grid={"a": list(range(100))}, seeds=100).size()


def test_a_preview_computes_at_most_its_maximum_of_steps(cli, tmp_path):
    path = write(tmp_path, yaml.safe_dump({**TINY, "schedule": {"name": "constant"}}))
    refused(cli("schedule", path, "--steps", 1_000_001),
            "--steps: 1,000,001 steps are more than a preview shows (1,000,000); pass --steps 1000000 or fewer "
            "(the whole run is 80 steps)")
    long = write(tmp_path, yaml.safe_dump({"train": {"epochs": 20, "batch_size": 1}}), "long.yaml")
    refused(cli("schedule", long), "--steps: 1,100,000 steps are more than a preview shows (1,000,000); pass "
                                   "--steps 1000000 or fewer (the whole run is 1,100,000 steps)")
    out = cli("schedule", long, "--steps", 3)
    assert out.exit_code == 0 and out.stdout == "step,lr\n0,0.1\n1,0.1\n2,0.1\n"


def test_find_lr_steps_are_bounded(cli, tmp_path):
    from lrdecay_cli.experiments.find_lr import Settings

    path = write(tmp_path, yaml.safe_dump(TINY))
    refused(cli("find-lr", path, "--steps", 100_001, "--runs-dir", tmp_path / "runs"),
            "--steps: 100,001 steps are too many; use at most 100,000 (fastai and Lightning take 100)")
    assert not (tmp_path / "runs").exists() and Settings(steps=100_000).steps == 100_000


def test_the_run_check_looks_at_a_few_lrs_however_long_the_run(monkeypatch):
    """100 epochs at batch 1 are 5.5 million steps: the old check computed every one (2.4 s)."""
    calls = []
    call = Schedule.__call__
    monkeypatch.setattr(Schedule, "__call__", lambda self, step: calls.append(step) or call(self, step))
    long = from_data({"train": {"epochs": 100, "batch_size": 1},
                      "schedule": {"name": "exponential", "decay_steps": 1000, "decay_rate": 0.96}}, "t")
    long.check_schedule("t")
    assert sorted(set(calls)) == [0, 1, 2, 5_499_999]


def test_a_long_run_is_checked_at_once_and_its_underflow_at_the_end_is_found(cli, tmp_path):
    """The issue's run, 100,000 epochs at batch 1 (5.5e9 steps, half an hour of checking before): the LR
    enters the underflow band only at its very last step."""
    rate = math.exp(math.log(0.999e-300 / 0.1) / 5500)
    schedule = {"name": "exponential", "decay_steps": 1_000_000, "decay_rate": rate}
    path = write(tmp_path, yaml.safe_dump({"train": {"epochs": 100_000, "batch_size": 1}, "schedule": schedule}))
    last = 100_000 * 55_000 - 1
    lr = 0.1 * rate ** (last / 1_000_000)
    assert 0 < lr < 1e-300 < 0.1 * rate ** ((last - 20_000) / 1_000_000)
    refused(cli("schedule", path, "--steps", 3),
            f"{path}: schedule: the LR underflows to {lr!r} at step {last} of this run; check the schedule's "
            f"parameters; fix the schedule in {path}")
    path.write_text(yaml.safe_dump({"train": {"epochs": 100_000, "batch_size": 1}, "schedule": {"name": "exponential"}}))
    out = cli("schedule", path, "--steps", 3)  # the default decay passes through the band mid-run, on to 0
    found = re.fullmatch(r"error: (.*): schedule: the LR underflows to (.*) at step (\d+) of this run; check the "
                         r"schedule's parameters; fix the schedule in (.*)\n", out.stderr)
    assert out.exit_code == 2 and found and found[1] == found[4] == str(path), out.output
    step, lr = int(found[3]), float(found[2])  # where in the band depends on subnormals being flushed or not
    assert 0 < lr == 0.1 * 0.96 ** (step / 1000) < 1e-300 and step < last
    path.write_text(yaml.safe_dump({"train": {"epochs": 100_000, "batch_size": 1},
                                    "schedule": {"name": "cosine_restarts", "first_decay_steps": 1000, "m_mul": 0.9}}))
    out = cli("schedule", path, "--steps", 3)
    assert out.exit_code == 0 and out.stdout == "step,lr\n0,0.1\n1,0.09999975326009292\n2,0.09999901304280685\n"
    path.write_text(yaml.safe_dump({"train": {"epochs": 100_000, "batch_size": 1},
                                    "schedule": {"name": "cosine_restarts", "first_decay_steps": 1, "t_mul": 1.0001}}))
    refused(cli("schedule", path, "--steps", 3),  # periods growing by 0.01%: each is looked at, so they are bounded
            f"{path}: schedule: t_mul 1.0001 makes 132,185 restarts in this run, more than the 10,000 its check looks at; "
            f"raise t_mul or first_decay_steps, or set t_mul: 1; fix the schedule in {path}")


def full_scan(params, lr: float, steps_per_epoch: int, epochs: int) -> str | None:
    """The old check: the LR of every step of the run."""
    schedule = lr_schedule(params, lr, steps_per_epoch, epochs)
    for step in range(epochs * steps_per_epoch):
        value = schedule(step)
        if not math.isfinite(value) or value < 0 or 0 < value < 1e-300 or value > 3.4028234663852886e38:
            return f"step {step}"
    return None


def random_schedule(rng: random.Random) -> dict:
    """A method with parameters near the edges: tiny LRs and factors, many short periods."""
    one = rng.choice
    name = one(["exponential", "step", "polynomial", "cosine_restarts", "cosine_annealing", "cosine_warm_restarts",
                "cyclic", "one_cycle", "wsd", "piecewise_constant", "inverse_sqrt", "linear", "sequence"])
    kw = {
        "exponential": lambda: {"decay_steps": one([1, 7, 100]), "decay_rate": one([1e-3, 0.5, 0.9, 1.5])},
        "step": lambda: {"step_size": one([1, 3]), "gamma": one([1e-20, 0.5, 2.0]), "interval": "step"},
        "polynomial": lambda: {"cycle": True, "decay_steps": one([1, 2, 5]), "end_learning_rate": 0.0,
                               "power": one([1.0, 100.0, 300.0])},
        "cosine_restarts": lambda: {"first_decay_steps": one([1, 3, 10]), "t_mul": one([1.0, 1.1, 2.0]),
                                    "m_mul": one([1e-3, 0.5, 0.99, 1.5]), "alpha": 0.0},
        "cosine_annealing": lambda: {"T_max": one([1, 4, 30]), "interval": "step"},
        "cosine_warm_restarts": lambda: {"T_0": one([1, 5]), "T_mult": one([1, 2]), "interval": "step"},
        "cyclic": lambda: {"max_lr": one([0.5, 1e39]), "step_size_up": one([1, 4]), "mode": one(["triangular2", "exp_range"]),
                           "gamma": 0.99},
        "one_cycle": lambda: {"pct_start": one([0.01, 0.3]), "div_factor": one([25.0, 1e100]),
                              "final_div_factor": one([1e4, 1e200])},
        "wsd": lambda: {"decay_fraction": one([0.01, 0.5]), "min_lr_ratio": one([0.0, 1e-299])},
        "piecewise_constant": lambda: {"boundaries": [5, 40], "values": [one([0.1, 1e-301]), 0.0, one([0.2, 1e39])]},
        "inverse_sqrt": lambda: {"warmup_steps": one([1, 50])},
        "linear": lambda: {"end_factor": 0.0, "total_iters": one([2, 300]), "interval": "step"},
        "sequence": lambda: {"boundaries": [one([3, 50])], "phases": [
            {"name": "constant"}, {"name": "polynomial", "cycle": True, "decay_steps": 2, "power": 300.0,
                                   "end_learning_rate": 0.0}]},
    }[name]()
    if rng.random() < 0.3 and name not in ("inverse_sqrt",):
        kw["warmup"] = {"steps": one([1, 10, 200]), "start_factor": one([1e-300, 0.1])}
    return {"name": name, **kw}


def test_the_run_check_finds_what_a_scan_of_every_step_finds():
    rng = random.Random(11)
    verdicts = []
    for _ in range(300):
        raw, lr = random_schedule(rng), rng.choice([1e-295, 1e-3, 0.1, 1e39])
        steps_per_epoch, epochs = rng.choice([1, 7, 100, 600]), rng.choice([1, 3, 10])
        try:
            params = from_data({"schedule": raw}, "t").schedule
            lr_schedule(params, lr, steps_per_epoch, epochs)
        except UserError:  # a parameter that does not fit the run
            continue
        try:
            check_run(params, lr, steps_per_epoch, epochs)
            found = None
        except (ValueError, ArithmeticError) as exc:
            found = str(exc)
        expected = full_scan(params, lr, steps_per_epoch, epochs)
        assert (found is None) == (expected is None), (raw, lr, steps_per_epoch, epochs, found, expected)
        verdicts.append(found is None)
    assert 100 < verdicts.count(True) and 50 < verdicts.count(False)


# ----------------------------------------------------------------------------- 3. numbers


@pytest.mark.parametrize("text,line", [
    ("seed: 1.0e+29\n", "seed: must be a valid integer, got 1e+29; fix it in {path}"),
    ("seed: 1e29\n", "seed: must be a valid integer, got 1e+29; fix it in {path}"),
    (f"seed: {2**63}\n", "seed: must be less than or equal to 9223372036854775807, got 9223372036854775808; "
                         "fix it in {path}"),
    (f"data: {{split_seed: {10**29}}}\n", "data.split_seed: must be less than or equal to 9223372036854775807, got "
                                          "100000000000000000000000000000; fix it in {path}"),
    ("optimizer: {lr: true}\n", "optimizer.lr: must be a valid number, got True; fix it in {path}"),
    ("train: {epochs: true}\n", "train.epochs: must be a valid integer, got True; fix it in {path}"),
    ("train: {epochs: 2.0}\n", "train.epochs: must be a valid integer, got 2.0; fix it in {path}"),
    ("train: {compile: yes}\n", "train.compile: must be a valid boolean, got 'yes'; write true or false (fix it in {path})"),
    ("optimizer: {name: sgd, momentum: 0.9, nesterov: on}\n",
     "optimizer.nesterov: must be a valid boolean, got 'on'; write true or false (fix it in {path})"),
    ("schedule: {name: exponential, staircase: off}\n",
     "schedule.staircase: must be a valid boolean, got 'off'; write true or false (fix it in {path})"),
    ("schedule: {name: step, step_size: false}\n", "schedule.step_size: must be a valid integer, got False; fix it in {path}"),
    ("optimizer: {name: adam, betas: [true, 0.9]}\n", "optimizer.betas.0: must be a valid number, got True; fix it in {path}"),
    ("optimizer: {lr: 1.0e+300}\n", "schedule: the LR is 1e+300 at step 0 of this run, more than float32 holds "
                                    "(3.4e+38); check the schedule's parameters; fix the schedule in {path}"),
    ("schedule: {name: exponential, decay_steps: 1, decay_rate: 1.0e+10}\n",
     "schedule: the LR overflows at step 199 of this run; check the schedule's parameters; fix the schedule in {path}"),
])
def test_numbers_are_bounded_and_booleans_are_no_numbers(cli, tmp_path, text, line):
    path = write(tmp_path, text + "data: {limit: 3000, val_size: 500}\n" if "data:" not in text else text)
    out = cli("train", path, "--runs-dir", tmp_path / "runs")
    refused(out, f"{path}: " + line.format(path=path))
    assert not (tmp_path / "runs").exists()


def test_sweep_numbers_are_bounded(cli, tmp_path):
    for sweep, line in (
            ({"random": {"n": 2, "seed": 2**64, "fields": {"optimizer.lr": [0.1, 0.05]}}},
             "random.seed: must be less than or equal to 9223372036854775807"),
            ({"random": {"n": True, "fields": {"optimizer.lr": [0.1, 0.05]}}}, "random.n: must be a valid integer"),
            ({"seeds": [1, 2**64]}, "seeds must be from 0 to 2**63 - 1, got [1, 18446744073709551616]"),
            ({"seeds": True}, "seeds.int: must be a valid integer")):
        path = write_sweep(tmp_path, **sweep)
        out = cli("sweep", path, "--dry-run")
        assert (out.exit_code, out.stdout) == (2, "") and out.stderr.startswith(f"error: {path}: {line}"), out.output
    out = cli("sweep", write_sweep(tmp_path), "--dry-run", "--grid", "train.compile=yes")
    assert out.exit_code == 2 and "train.compile: must be a valid boolean, got 'yes'" in out.stderr


def test_yaml_floats_without_a_dot_and_strings_that_look_like_numbers(tmp_path):
    path = write(tmp_path, "name: 1e5\noptimizer: {name: adam, lr: 3e-4, eps: 1E-8}\ndata: {limit: 3000, val_size: 500}\n")
    with pytest.raises(UserError, match=r"name: must be a valid string, got 100000.0"):
        load(path)
    spec = load(path, ["name=x", "optimizer.weight_decay=1e-2"])
    assert (spec.optimizer.lr, spec.optimizer.eps, spec.optimizer.weight_decay) == (3e-4, 1e-8, 1e-2)
    for name in ("1e5", "yes", "on", "1.5"):  # written quoted, read back as the string it is
        again = write(tmp_path, Spec(name=name).dump(), "again.yaml")
        assert load(again).name == name and Spec(name=name) == load(again)


# ----------------------------------------------------------------------------- 4. labels from the trials themselves


def edited_copy(seeded_sweep: Path, tmp_path: Path, edit) -> Path:
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(seeded_sweep, sweep_dir)
    data = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    edit(data)
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return sweep_dir


def test_results_take_each_trials_values_from_its_own_config(seeded_sweep, tmp_path):
    sweep_dir = edited_copy(seeded_sweep, tmp_path, lambda data: data["grid"].update({"optimizer.lr": [0.05, 0.07]}))
    sweep, base = sweep_file.parse_sweep(yaml.safe_load((sweep_dir / "sweep.yaml").read_text()), "t", sweep_dir)
    rows = sweeps.results(sweep_dir, sweep_file.expand(sweep, base, "t"))
    assert [(r["optimizer.lr"], r["seed"]) for r in rows] == [(0.05, 1), (0.05, 2), (0.1, 1), (0.1, 2)]


def test_resume_refuses_a_sweep_yaml_that_no_longer_expands_to_its_trials(cli, seeded_sweep, tmp_path):
    assert cli("sweep", "--resume", seeded_sweep, "--dry-run").exit_code == 0  # as written: fine
    for edit, line in (
            (lambda data: data["grid"].update({"optimizer.lr": [0.05, 0.07]}),
             "trial t002 would have optimizer.lr=0.07, but its config.yaml has 0.1"),
            (lambda data: data["base"]["train"].update({"epochs": 2}),
             "trial t000 would have train.epochs=2, but its config.yaml has 1"),
            (lambda data: data["grid"].update({"optimizer.lr": [0.05]}), "it expands to 2 trials, but t002 has run")):
        sweep_dir = edited_copy(seeded_sweep, tmp_path, edit)
        before = {p.name: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
        refused(cli("sweep", "--resume", sweep_dir), f"{sweep_dir / 'sweep.yaml'}: {line}; restore sweep.yaml as the "
                                                      "sweep wrote it, or start a new sweep")
        assert {p.name: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == before
        shutil.rmtree(sweep_dir)
