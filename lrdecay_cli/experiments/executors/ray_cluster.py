"""Stacks as Ray tasks on a Ray cluster (`pip install lrdecay_cli[ray]`), one stack per GPU (trials on CUDA) or
per node, so each machine trains one stacked model rather than one small model per core.

A task trains its stack in a scratch directory on whichever node runs it and returns every trial's files, so
results land in the driver's sweep directory whether or not the nodes share a file system; a resumed trial takes
its directory along. The driver must run on a node of the cluster (Ray attaches it to a raylet on its machine).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import torch

from lrdecay_cli.config.sweep_file import Trial
from lrdecay_cli.errors import UserError
from lrdecay_cli.experiments.executors.stacks import OnDone, OnStart, States, run_stack, stacks
from lrdecay_cli.rundir.fs import write_atomic
from lrdecay_cli.rundir.layout import SUMMARY, Status
from lrdecay_cli.rundir.record import mark_failed

CONNECT_TIMEOUT_S = 15
"""The longest the driver waits for a cluster: its GCS port must accept a TCP connection within it,
and Ray then makes one connection attempt of about as long (CONNECT_ENV)."""

CONNECT_ENV = {  # Ray reads the last two when it is first imported
    "RAY_gcs_server_port_wait_time_s": "1",  # attempts, 1 s apart (ray/_private/node.py, Node._init_gcs_client)
    "RAY_gcs_rpc_server_connect_timeout_s": "4",  # each of its two gRPC connects (default 5 s)
    "RAY_py_gcs_connect_timeout_s": "6",  # then its wait for the cluster's ID (default 30 s)
}
"""Ray's settings while the driver joins a cluster: one attempt of 4 + 4 + 6 + 1 s. Ray's defaults
(20 attempts of 41 s) retry an address whose port answers but whose GCS it cannot reach for 14 minutes."""


def pack(run_dir: Path) -> dict[str, bytes]:
    """A run directory's regular files (tensorboard/ and other subdirectories too) by relative path."""
    paths = (Path(root) / name for root, _, names in os.walk(run_dir) for name in names)  # never follows links
    return {path.relative_to(run_dir).as_posix(): path.read_bytes() for path in paths
            if path.is_file() and not path.is_symlink()}


def unpack(sweep_dir: Path, trial: Trial, files: dict[str, bytes]) -> None:
    """Write a trial's files (subdirectories such as tensorboard/ too) into `sweep_dir`, summary.json last."""
    path = sweep_dir / trial.dirname
    path.mkdir(exist_ok=True)
    for name in sorted(files, key=lambda n: n == SUMMARY):
        target = path / name
        if path.resolve() not in target.resolve().parents:
            raise ValueError(f"a worker sent a file outside its run directory: {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, files[name])


def train_stack(stack: list[Trial], shipped: dict[str, dict[str, bytes]], states: States, threads: int,
                force: bool) -> list[dict]:
    """On a Ray worker: train `stack` in a scratch directory (from `shipped` files where given); each trial's result."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="lrdecay-") as name:
        scratch = Path(name)
        for trial in stack:
            if trial.dirname in shipped:
                unpack(scratch, trial, shipped[trial.dirname])
        summaries = run_stack(stack, scratch, states, force)
        return [{"summary": summary, "files": pack(scratch / trial.dirname)}
                for trial, summary in zip(stack, summaries)]


def gcs_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) of a cluster's GCS, as `ray start --head` prints it."""
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "://" in address or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"'{address}' is not a Ray cluster address", where="--address",
                        fix="give the head node's HOST:PORT (ray start --head prints it; the port is 6379 unless "
                            "--port says otherwise; ray:// client addresses are not supported)")
    return host, int(port)


def driver_node_ip(host: str | None, node_ip: str | None) -> str:
    """The driver's node IP: --node-ip, else loopback for a new local instance or a cluster on a loopback address,
    else "" (Ray's choice). Ray (ray.init's `_node_ip_address`) turns a loopback IP into the machine's routable one,
    as `ray start --node-ip-address 127.0.0.1` does for the nodes (ray/_private/services.py,
    resolve_ip_for_localhost), so the driver always matches nodes started that way."""
    if node_ip is not None:
        try:
            ipaddress.ip_address(node_ip)
        except ValueError:
            raise UserError(f"'{node_ip}' is not an IP address", where="--node-ip",
                            fix="give this machine's address as the cluster's nodes see it, e.g. 10.0.0.5") from None
        return node_ip
    if host is None or host == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name
        return ""
    return ("::1" if ip.version == 6 else "127.0.0.1") if ip.is_loopback else ""


def probe(address: str, host: str, port: int) -> None:
    """Fail within CONNECT_TIMEOUT_S where nothing accepts a TCP connection at the GCS address."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:  # refused, timed out, unreachable, unknown host
        why = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise UserError(f"no Ray cluster answers at {address} ({why}; waited up to {CONNECT_TIMEOUT_S} s)",
                        where="--address", fix="start one with ray start --head, or pass the address that "
                                               "ray start --head printed") from None


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """`values` set in os.environ for the block, the environment as it was after it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def stderr_held():
    """Hold what is written to stderr (fd 2) in the block, replayed where it succeeds: Ray's C++ client logs each
    failed connection attempt there before ray.init raises, and a failure is to be one line of ours."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)  # reached only where the block succeeded
        os.write(2, held.read())


def connect(ray, address: str | None, node_ip: str) -> None:
    """ray.init: a new local instance (address None) or the cluster at `address`; a UserError if that fails."""
    kwargs = {"_node_ip_address": node_ip} if node_ip else {}
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        with stderr_held() if address else contextlib.nullcontext():
            ray.init(address=address or "local", include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, **kwargs)  # "local": a new instance even where RAY_ADDRESS is set
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        causes = [exc]
        while causes[-1].__cause__ or causes[-1].__context__:
            causes.append(causes[-1].__cause__ or causes[-1].__context__)
        refused = ray.exceptions.AuthenticationError  # passed on as text (ray/_private/node.py, _init_gcs_client)
        if any(isinstance(cause, refused) or refused.__name__ in str(cause) for cause in causes):
            raise UserError(f"the Ray cluster at {address} wants an authentication token", where="--address",
                            fix="set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file "
                                "~/.ray/auth_token)") from None
        if not address:
            raise UserError(f"cannot start a local Ray instance: {first_line(exc)}", where="--executor ray",
                            fix="see Ray's message, or use --executor processes") from None
        raise UserError(f"cannot join the Ray cluster at {address}: {first_line(exc)}", where="--address",
                        fix="run the sweep on a node of that cluster (ray start --address ADDRESS there first), "
                            "with --node-ip this machine's address as the cluster sees it") from None
    finally:
        if previous is not None:  # ray.init makes SIGTERM exit at once; the sweep handles it itself
            signal.signal(signal.SIGTERM, previous)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def placed(ray, trials: list[Trial], states: States) -> list[tuple[list[Trial], dict]]:
    """Stacks with their Ray resources: one per GPU for trials on CUDA (`auto` too where the cluster has GPUs), one
    per node for the rest, each with the smallest node's CPUs, shared out where there are more stacks than nodes."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = [node["Resources"]["CPU"] for node in ray.nodes()
            if node["Alive"] and node["Resources"].get("CPU", 0) >= 1]
    wants_gpu = {t.index for t in trials
                 if t.spec.train.device.startswith("cuda") or (t.spec.train.device == "auto" and gpus)}
    on_gpu = [t for t in trials if t.index in wants_gpu]
    on_cpu = [t for t in trials if t.index not in wants_gpu]
    if on_gpu and not gpus:
        raise UserError("the trials train on CUDA but the Ray cluster has no GPU", where="train.device",
                        fix="add GPU nodes, or set train.device: cpu (--set train.device=cpu)")
    if on_cpu and not cpus:
        raise UserError("the Ray cluster has no node with a CPU to train on", where="--address",
                        fix="add a node with ray start --address ADDRESS --num-cpus N")
    planned = [(stack, {"num_cpus": 1, "num_gpus": 1}) for stack in stacks(on_gpu, states, gpus)]
    cpu_stacks = stacks(on_cpu, states, len(cpus))
    if cpu_stacks:
        share = max(1, int(min(cpus)) // math.ceil(len(cpu_stacks) / len(cpus)))
        planned += [(stack, {"num_cpus": share}) for stack in cpu_stacks]
    return planned


def run_ray(trials: list[Trial], sweep_dir: Path, states: States, on_start: OnStart, on_done: OnDone,
            address: str | None, retries: int = 0, node_ip: str | None = None, force: bool = False) -> None:
    host, port = gcs_address(address) if address else (None, 0)
    node_ip = driver_node_ip(host, node_ip)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to the internet
    with environment(CONNECT_ENV if address else {}):
        try:
            import ray
        except ImportError:
            raise UserError("Ray is not installed", where="--executor ray",
                            fix="pip install 'lrdecay_cli[ray]', or use --executor processes") from None
        started_here = not ray.is_initialized()
        if started_here:
            if address:
                probe(address, host, port)
            connect(ray, address, node_ip)
    try:
        run_tasks(ray, trials, sweep_dir, states, on_start, on_done, retries, force)
    finally:
        if started_here:
            ray.shutdown()


def run_tasks(ray, trials: list[Trial], sweep_dir: Path, states: States, on_start: OnStart, on_done: OnDone,
              retries: int, force: bool) -> None:
    """Submit every stack, then land each one's trials as its task comes back."""
    task = ray.remote(max_retries=retries)(train_stack)  # retried where its worker dies
    pending = {}
    for stack, resources in placed(ray, trials, states):
        shipped = {t.dirname: pack(sweep_dir / t.dirname) for t in stack if states[t.index].resumable}
        for trial in stack:  # a fresh start: clear what a failure or a start killed before its checkpoint left
            if trial.dirname not in shipped:
                shutil.rmtree(sweep_dir / trial.dirname, ignore_errors=True)
            on_start(trial)
        mine = {t.index: states[t.index] for t in stack}
        ref = task.options(scheduling_strategy="SPREAD", **resources).remote(stack, shipped, mine, resources["num_cpus"],
                                                                             force)
        pending[ref] = stack
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        stack = pending.pop(done)
        try:
            results, failure = ray.get(done), None
        except ray.exceptions.RayError as exc:  # the worker died or the task raised
            cause = getattr(exc, "cause", None) or exc  # a RayTaskError's: what the task raised
            results, failure = [None] * len(stack), f"Ray task failed: {first_line(cause)}"
        for trial, result in zip(stack, results):
            on_done(trial, land(sweep_dir, trial, result, failure))


def land(sweep_dir: Path, trial: Trial, result: dict | None, failure: str | None) -> dict:
    """A trial's summary, its files written into the sweep directory; failed where its task failed."""
    if result is not None:
        try:
            unpack(sweep_dir, trial, result["files"])
            return result["summary"]
        except ValueError as exc:
            failure = str(exc)
    mark_failed(sweep_dir / trial.dirname, failure, trial.spec.dump())
    return {"status": Status.FAILED, "message": failure}
