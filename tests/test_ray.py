"""The ray executor: stacks as Ray tasks whose run directories come back to the driver, on a local
instance and on a real two-node cluster on loopback; resumed trials continue from their checkpoints
there; unreachable and malformed addresses fail at once with one line."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import assert_same_lrs_close_losses, read_csv
from lrdecay_cli.experiments import sweep as sweeps
from lrdecay_cli.errors import UserError
from lrdecay_cli.experiments.executors import ray_cluster
from lrdecay_cli.training.checkpoint import state_of
from lrdecay_cli.training.loop import train
from test_executors import BASE, assert_member_equals_sequential
from test_resume import SignalAfterEpoch


@pytest.fixture
def local_ray():
    """A Ray instance on loopback that this test starts and stops."""
    import ray  # in the dev extra: a missing install step fails here, not silently
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR",
             log_to_driver=False)
    yield ray
    ray.shutdown()


def free_ports(n: int) -> list[int]:
    """`n` distinct ports nobody listens on now (all held at once, so none repeats)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def kill_session(sid: int) -> None:
    """SIGKILL every process of the session `ray start` made (its daemons and their workers), then
    wait until they are gone: nothing else on the machine is touched, unlike `ray stop`."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.killpg(sid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node of one CPU each, both on 127.0.0.1, with their own temp directories,
    ports and token; `tasks()` counts the train_stack tasks each node has run so far."""
    ray = Path(sys.executable).with_name("ray")
    root = Path(tempfile.mkdtemp(prefix="lrdr", dir="/tmp"))  # short: Ray's socket paths live under it
    env = without_ray_settings()
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    port, dashboard, client, *agents = free_ports(5)
    starts = {
        "head": ["--head", "--port", port, "--include-dashboard", "false", "--dashboard-port", dashboard,
                 "--ray-client-server-port", client],
        "node": ["--address", f"127.0.0.1:{port}"],
    }
    sessions = []
    try:
        for (name, args), agent in zip(starts.items(), agents):
            args += ["--node-ip-address", "127.0.0.1", "--num-cpus", 1, "--disable-usage-stats",
                     "--dashboard-agent-listen-port", agent, "--temp-dir", root / name]
            process = subprocess.Popen([ray, "start", *map(str, args)], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
            sessions.append(process.pid)
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0, out

        def tasks() -> dict[str, int]:
            return {name: sum(path.read_text(errors="replace").splitlines().count(":task_name:train_stack")
                              for path in {p.resolve() for p in (root / name).glob("session_*/logs/worker-*.out")})
                    for name in starts}  # session_latest links to the session

        yield SimpleNamespace(address=f"127.0.0.1:{port}", env=env, tasks=tasks)
    finally:
        for sid in sessions:
            kill_session(sid)
        shutil.rmtree(root, ignore_errors=True)


def without_ray_settings() -> dict[str, str]:
    """This environment without RAY_* variables (a Ray instance started in-process leaves some)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


def lrdecay(*args, env, timeout=300) -> subprocess.CompletedProcess:
    """The real CLI in a process of its own (as a user runs it against a cluster)."""
    return subprocess.run([sys.executable, "-m", "lrdecay_cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def write_sweep(tmp_path, **sweep) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "base": BASE, **sweep}))
    return path


def only_sweep(runs: Path) -> Path:
    (sweep_dir,) = (runs / "sweeps").iterdir()
    return sweep_dir


def test_ray_tasks_bring_their_run_directories_back(cli, tmp_path, local_ray):
    path = tmp_path / "sweep.yaml"
    base = {**BASE, "data": {"limit": 1500, "val_size": 300}, "train": {**BASE["train"], "epochs": 1, "tensorboard": True}}
    path.write_text(yaml.safe_dump({"name": "r", "base": base, "seeds": 2, "variants": [
        {"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}}, {"optimizer": {"name": "sgd", "lr": 1.0e6}}]}))
    out = cli("sweep", path, "--runs-dir", tmp_path / "ray", "--executor", "ray", "--quiet")
    assert out.exit_code == 1 and "2 diverged" in out.stderr, out.output  # the lr 1e6 trials, as train exits 1
    assert cli("sweep", path, "--runs-dir", tmp_path / "seq", "--quiet").exit_code == 1
    ray_dir, seq_dir = only_sweep(tmp_path / "ray"), only_sweep(tmp_path / "seq")
    rows = read_csv(ray_dir / "results.csv")
    assert [r["status"] for r in rows] == ["completed", "completed", "diverged", "diverged"]
    for row in rows:
        trial = row["trial"]
        def layout(run):  # event file names hold a host and a time, so compare directories and counts
            return sorted(str(p.parent.relative_to(run)) for p in run.rglob("*") if p.is_file())

        assert layout(ray_dir / trial) == layout(seq_dir / trial) and (ray_dir / trial / "tensorboard").is_dir()
        assert {p.name for p in (ray_dir / trial).iterdir()} == {p.name for p in (seq_dir / trial).iterdir()}
        assert_same_lrs_close_losses(seq_dir / trial / "lr.csv", ray_dir / trial / "lr.csv", rel=2e-3)  # a stack
    assert local_ray.is_initialized()  # the executor used the test's instance and left it running


def test_a_sweep_resumed_on_ray_continues_its_interrupted_trial_from_the_checkpoint(cli, tmp_path):
    path = write_sweep(tmp_path, seeds=2)
    assert cli("sweep", path, "--runs-dir", tmp_path / "seq", "--executor", "sequential", "--quiet").exit_code == 0
    seq_dir = only_sweep(tmp_path / "seq")
    sweep_dir = tmp_path / "cut" / "sweeps" / "r"  # the same sweep, its first trial stopped after epoch 1
    sweep_dir.mkdir(parents=True)
    shutil.copy(seq_dir / "sweep.yaml", sweep_dir)
    first, second = sweeps.reopen(sweep_dir).trials
    cut = train(first.spec, sweep_dir, SignalAfterEpoch(1), dirname=first.dirname)
    assert cut.summary["status"] == "interrupted" and state_of(sweep_dir / first.dirname).resumable
    kept, kept_steps = (cut.path / "metrics.csv").read_bytes(), (cut.path / "lr.csv").read_bytes()
    assert len(read_csv(cut.path / "metrics.csv")) == 1

    # --force: the trial ran here with all the cores' threads, and its Ray task gets a share of the node's
    run = lrdecay("sweep", "--resume", sweep_dir, "--executor", "ray", "--quiet", "--force", env=without_ray_settings())
    assert run.returncode == 0, run.stderr  # on a new local instance: its tasks train in scratch directories
    assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["completed", "completed"]
    metrics = (cut.path / "metrics.csv").read_bytes()
    assert metrics.startswith(kept) and len(read_csv(cut.path / "metrics.csv")) == 2  # epoch 1 as it was, to the byte
    assert (cut.path / "lr.csv").read_bytes().startswith(kept_steps)  # epoch 1's steps as they were, losses too
    for trial in (first, second):  # the fresh one trained alongside, in a stack of its own (another start step)
        assert_member_equals_sequential(seq_dir, sweep_dir, trial.dirname, rel=1e-4)


def test_a_two_node_cluster_on_loopback_trains_one_stack_per_node(cli, tmp_path, cluster):
    path = write_sweep(tmp_path, seeds=2, variants=[
        {"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}},
        {"schedule": {"name": "exponential", "decay_steps": 7, "decay_rate": 0.8}, "optimizer": {"momentum": 0.5}}])
    before = cluster.tasks()
    run = lrdecay("sweep", path, "--runs-dir", tmp_path / "ray", "--executor", "ray", "--address", cluster.address,
                  "--quiet", env=cluster.env)
    assert run.returncode == 0, run.stderr
    assert cli("sweep", path, "--runs-dir", tmp_path / "seq", "--executor", "sequential", "--quiet").exit_code == 0
    ray_dir, seq_dir = only_sweep(tmp_path / "ray"), only_sweep(tmp_path / "seq")
    rows = read_csv(ray_dir / "results.csv")
    assert [r["status"] for r in rows] == ["completed"] * 4
    for row in rows:  # each node trained two of them as one stacked model
        assert_member_equals_sequential(seq_dir, ray_dir, row["trial"])
    after = cluster.tasks()
    assert {name: after[name] - before[name] for name in after} == {"head": 1, "node": 1}


def test_sigterm_ends_a_ray_sweep_as_it_ends_the_others(tmp_path, cluster):
    """ray.wait turns what a signal handler raises into a bare KeyboardInterrupt: SIGTERM must still
    exit 143 with the --resume hint, not 130 (Ctrl-C's)."""
    path = write_sweep(tmp_path, seeds=1, variants=[{"train": {"epochs": 300}}])
    before = sum(cluster.tasks().values())
    process = subprocess.Popen([sys.executable, "-m", "lrdecay_cli", "sweep", str(path), "--runs-dir",
                                str(tmp_path / "runs"), "--executor", "ray", "--address", cluster.address, "--quiet"],
                               env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while sum(cluster.tasks().values()) == before and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)  # until its task runs: the driver waits in ray.wait
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: sweep interrupted (SIGTERM); continue with: lrdecay sweep --resume ")


def test_a_cluster_that_wants_a_token_says_so(tmp_path, cluster):
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    run = lrdecay("sweep", write_sweep(tmp_path, seeds=1), "--runs-dir", tmp_path / "runs", "--executor", "ray",
                  "--address", cluster.address, "--quiet", env=env, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: --address: the Ray cluster at {cluster.address} wants an authentication token; set "
        "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token)"]


def test_an_address_nobody_listens_on_fails_at_once_with_one_line(tmp_path):
    path = write_sweep(tmp_path, seeds=1)
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    start = time.monotonic()
    run = lrdecay("sweep", path, "--runs-dir", tmp_path / "runs", "--executor", "ray", "--address", address,
                  "--quiet", env=without_ray_settings(), timeout=120)
    seconds = time.monotonic() - start
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert address in line and "Connection refused" in line and f"{ray_cluster.CONNECT_TIMEOUT_S} s" in line
    assert seconds < ray_cluster.CONNECT_TIMEOUT_S + 30  # the CLI's own start-up (torch, ray) included


def test_an_address_that_never_answers_fails_after_the_timeout(monkeypatch):
    """A listening socket whose backlog is full drops new connections: they hang as at a host that is down."""
    monkeypatch.setattr(ray_cluster, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        filler.settimeout(5)
        filler.connect(("127.0.0.1", port))  # the one connection its backlog holds
        start = time.monotonic()
        with pytest.raises(UserError) as error:
            ray_cluster.probe(f"127.0.0.1:{port}", "127.0.0.1", port)
        assert f"no Ray cluster answers at 127.0.0.1:{port} (timed out; waited up to 1 s)" in error.value.line()
        assert 0.9 < time.monotonic() - start < 5


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:port", "127.0.0.1:0", ":6379", "ray://10.0.0.1:10001"])
def test_a_malformed_address_is_a_user_error(cli, tmp_path, address):
    out = cli("sweep", write_sweep(tmp_path, seeds=1), "--runs-dir", tmp_path / "runs", "--executor", "ray",
              "--address", address, "--quiet")
    assert out.exit_code == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: --address: '{address}' is not a Ray cluster address; give the head node's")


def test_files_travel_as_regular_files_and_a_failed_task_fails_its_trials(tmp_path):
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "events").write_bytes(b"1")
    (run / "lr.csv").write_text("step,lr\n")
    (run / "elsewhere").symlink_to(tmp_path / "secret")
    assert ray_cluster.pack(run) == {"lr.csv": b"step,lr\n", "tensorboard/events": b"1"}
    first, second = sweeps.plan(write_sweep(tmp_path, seeds=2)).trials
    message = "Ray task failed: WorkerCrashedError: the worker died"
    assert ray_cluster.land(tmp_path, first, None, message) == {"status": "failed", "message": message}
    assert json.loads((tmp_path / first.dirname / "summary.json").read_text())["status"] == "failed"
    assert (tmp_path / first.dirname / "config.yaml").read_text() == first.spec.dump()  # plot and compare read it
    escaping = {"summary": {"status": "completed"}, "files": {"../t000/summary.json": b"{}", "lr.csv": b"1"}}
    summary = ray_cluster.land(tmp_path, second, escaping, None)
    assert summary["status"] == "failed"
    assert summary["message"] == "a worker sent a file outside its run directory: ../t000/summary.json"
    assert json.loads((tmp_path / first.dirname / "summary.json").read_text())["message"] == message  # untouched


def test_the_driver_node_ip():
    assert ray_cluster.driver_node_ip(None, None) == "127.0.0.1"  # a new local instance
    assert ray_cluster.driver_node_ip("127.0.0.1", None) == ray_cluster.driver_node_ip("localhost", None) == "127.0.0.1"
    assert ray_cluster.driver_node_ip("127.3.2.1", None) == "127.0.0.1"
    assert ray_cluster.driver_node_ip("::1", None) == "::1"
    assert ray_cluster.driver_node_ip("10.0.0.1", None) == ray_cluster.driver_node_ip("head.example", None) == ""
    assert ray_cluster.driver_node_ip("10.0.0.1", "10.0.0.7") == "10.0.0.7"
    with pytest.raises(UserError, match="--node-ip: 'my-laptop' is not an IP address"):
        ray_cluster.driver_node_ip("10.0.0.1", "my-laptop")
