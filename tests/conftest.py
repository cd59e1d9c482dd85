"""Test-wide settings: 8 simulated CPU devices, strict promotion, no network.

These run before any test imports jax's backend, so every test sees the same world a
TPU VM host would show (8 devices) while running on one CPU.
"""

import collections
import os
import socket

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests must never wait on a network: tfds would otherwise retry downloads for minutes.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")


_real_connect = socket.socket.connect


def _local_only_connect(self, address):
    """Refuses every connection that leaves the machine (tests are offline by design)."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (
        host in ("localhost", "::1", "") or host.startswith("127.") or host.startswith("/")
    ):
        return _real_connect(self, address)
    raise OSError(f"network access is disabled in tests (tried to reach {address!r})")


socket.socket.connect = _local_only_connect


@pytest.fixture(autouse=True)
def _tfds_offline(tmp_path, monkeypatch):
    """Points TFDS at an empty temporary data_dir and turns download retries off."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    try:
        from tensorflow_datasets.core.download import downloader
    except ImportError:  # the core tests run without the harness extras
        yield
        return
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0, raising=False)
    yield


def _weight(item) -> int:
    """How many end-to-end runs ``item`` stands for: ``@pytest.mark.slow`` counts one,
    ``@pytest.mark.slow(n)`` (a test that starts n ``rnnlab`` processes) counts n."""
    mark = item.get_closest_marker("slow")
    if mark is None:
        return 0
    return int(mark.args[0]) if mark.args else 1


def _group(item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0] if mark.args else mark.kwargs["name"])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Puts every test in the ``xdist_group`` of its file unless it names its own, then
    runs the groups with the most end-to-end runs (``@pytest.mark.slow``) first, each
    group's tests in their own order.

    ``make test`` hands whole files to parallel workers (pytest-xdist, ``--dist loadfile
    --no-loadscope-reorder``) in the order of their first test here, so a file's module
    fixtures are trained once, on one worker. With ``--dist loadgroup`` a long
    independent test that names its own group (``pytest.mark.xdist_group("faults-record")``,
    one per parametrized case with ``pytest.param(..., marks=...)``) runs on another worker
    beside the rest of its file; ``make test`` does not, because its multi-process tests
    slowed each other side by side (decision 139). This hook runs first so that xdist,
    which reads the marks in the same hook to name the groups, sees the ones added here.
    Starting the heaviest groups first lets the workers finish together instead of one
    waiting on a long group handed out last. A file whose tests are slow without the mark
    can say so with ``pytestmark = pytest.mark.slow``.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    weight = collections.Counter()
    for item in items:
        weight[_group(item)] += _weight(item)
    first_seen = {group: i for i, group in enumerate(dict.fromkeys(map(_group, items)))}
    items.sort(key=lambda item: (-weight[_group(item)], first_seen[_group(item)]))


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    """Drops each file's compiled programs when the file ends: a worker runs many files
    one after another, and their programs (rarely shared across files) would otherwise
    stay in memory for the whole run."""
    yield
    jax.clear_caches()
