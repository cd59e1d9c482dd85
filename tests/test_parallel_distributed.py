"""Start-up settings of the distributed runtime (what reaches jax.distributed.initialize)."""

import jax
import pytest

from rnnlab import parallel
from rnnlab.parallel import distributed

NO_ENV: dict[str, str] = {}


def test_nothing_given_off_tpu_is_a_single_process():
    settings = parallel.resolve_settings(environ=NO_ENV, tpu_vm=False)
    assert settings == parallel.DistributedSettings("single")


def test_nothing_given_on_tpu_lets_jax_discover_the_slice():
    assert parallel.resolve_settings(environ=NO_ENV, tpu_vm=True).mode == "tpu"


def test_arguments_give_explicit_settings():
    settings = parallel.resolve_settings("10.0.0.1:1234", 4, 3, "0,1", environ=NO_ENV)
    assert settings == parallel.DistributedSettings("explicit", "10.0.0.1:1234", 4, 3, (0, 1))


def test_project_environment_names_win_over_jax_names():
    env = {
        "RNNLAB_COORDINATOR": "host-a:99",
        "JAX_COORDINATOR_ADDRESS": "host-b:11",
        "RNNLAB_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
        "JAX_LOCAL_DEVICE_IDS": "3",
    }
    settings = parallel.resolve_settings(environ=env, tpu_vm=False)
    assert settings == parallel.DistributedSettings("explicit", "host-a:99", 2, 1, (3,))


def test_arguments_win_over_environment():
    env = {"RNNLAB_COORDINATOR": "a:1", "RNNLAB_NUM_PROCESSES": "8", "RNNLAB_PROCESS_ID": "7"}
    settings = parallel.resolve_settings(num_processes=2, process_id=0, environ=env)
    assert (settings.coordinator_address, settings.num_processes, settings.process_id) == (
        "a:1",
        2,
        0,
    )


def test_one_process_needs_no_runtime():
    assert parallel.resolve_settings(num_processes=1, environ=NO_ENV).mode == "single"
    assert parallel.resolve_settings("h:1", 1, 0, environ=NO_ENV).mode == "single"


@pytest.mark.parametrize(
    "kwargs, env, message",
    [
        ({"coordinator_address": "h:1"}, NO_ENV, r"got coordinator_address \(from argument"),
        (
            {"num_processes": 2},
            NO_ENV,
            r"not coordinator_address \(argument or RNNLAB_COORDINATOR / JAX_COORDINATOR_ADDRESS",
        ),
        (
            {},
            {"RNNLAB_PROCESS_ID": "1"},
            r"process_id \(from environment variable RNNLAB_PROCESS_ID",
        ),
        ({"coordinator_address": "h:1", "num_processes": 2}, NO_ENV, "not process_id"),
    ],
)
def test_half_specified_settings_are_rejected(kwargs, env, message):
    with pytest.raises(ValueError, match="incomplete") as info:
        parallel.resolve_settings(**kwargs, environ=env, tpu_vm=True)
    assert info.match(message)


@pytest.mark.parametrize(
    "args, env, message",
    [
        (("h:1", 2, 2), NO_ENV, r"process_id must be in \[0, 2\) for 2 processes, got 2"),
        (("h:1", 0, 0), NO_ENV, "num_processes must be >= 1, got 0"),
        (("h", 2, 0), NO_ENV, "must look like 'host:port', got 'h'"),
        (("h:port", 2, 0), NO_ENV, "must look like 'host:port'"),
        ((None, None, None), {"RNNLAB_NUM_PROCESSES": "two"}, "RNNLAB_NUM_PROCESSES must be an"),
        ((None, 1, 1), NO_ENV, "must be 0 for a single process, got 1"),
        (("h:1", True, 0), NO_ENV, "num_processes must be an integer"),
    ],
)
def test_malformed_settings_are_rejected(args, env, message):
    with pytest.raises(ValueError, match=message):
        parallel.resolve_settings(*args, environ=env, tpu_vm=False)


def test_tpu_detection_respects_cpu_platform():
    assert not parallel.on_cloud_tpu_vm({"JAX_PLATFORMS": "cpu", "TPU_WORKER_HOSTNAMES": "a,b"})
    assert parallel.on_cloud_tpu_vm({"TPU_WORKER_HOSTNAMES": "a,b"})


@pytest.fixture
def fake_runtime(monkeypatch):
    """Records calls instead of starting a runtime, and forgets earlier initialisations."""
    calls = []
    monkeypatch.setattr(distributed, "_active", None)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    for names in distributed.ENV_NAMES.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    return calls


def test_initialize_single_process_is_a_no_op(fake_runtime):
    assert parallel.initialize() is False
    assert parallel.initialize(num_processes=1) is False
    assert fake_runtime == []


def test_initialize_passes_explicit_settings_once(fake_runtime, monkeypatch):
    monkeypatch.setenv("RNNLAB_COORDINATOR", "127.0.0.1:5555")
    monkeypatch.setenv("RNNLAB_NUM_PROCESSES", "2")
    monkeypatch.setenv("RNNLAB_PROCESS_ID", "1")
    assert parallel.initialize() is True
    assert parallel.initialize() is True  # same settings from the environment
    assert fake_runtime == [
        {"coordinator_address": "127.0.0.1:5555", "num_processes": 2, "process_id": 1}
    ]
    monkeypatch.delenv("RNNLAB_COORDINATOR")
    monkeypatch.delenv("RNNLAB_NUM_PROCESSES")
    monkeypatch.delenv("RNNLAB_PROCESS_ID")
    assert parallel.initialize() is True  # a later call without settings, e.g. by a trainer
    with pytest.raises(RuntimeError, match="already running"):
        parallel.initialize("127.0.0.1:6666", 2, 1)
    assert len(fake_runtime) == 1


def test_initialize_on_tpu_calls_jax_without_arguments(fake_runtime, monkeypatch):
    monkeypatch.setattr(distributed, "on_cloud_tpu_vm", lambda environ=None: True)
    assert parallel.initialize() is True
    assert parallel.initialize() is True
    assert fake_runtime == [{}]


def test_initialize_half_specified_raises_before_starting(fake_runtime):
    with pytest.raises(ValueError, match="incomplete"):
        parallel.initialize(coordinator_address="127.0.0.1:1")
    assert fake_runtime == []


def test_initialize_respects_a_runtime_started_elsewhere(fake_runtime, monkeypatch):
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    assert parallel.initialize("127.0.0.1:1", 2, 0) is True
    assert fake_runtime == []
