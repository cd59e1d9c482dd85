"""`rnnlab train` across two real processes on localhost (CPU, gloo collectives).

Three runs of one small experiment (an LSTM regressor on the adding problem) start
together through the command line:

- ``single``: one process with 4 simulated devices, mesh ``data=4``, parameters replicated;
- ``multi``: 2 processes with 2 devices each, coordinator on a free local port, mesh
  ``data=2 x fsdp=2`` with the FSDP rules (``--config.mesh.fsdp=2``), the same global batch;
- ``preempted``: like ``multi`` (with ``--coordinator``/``--num-processes``/``--process-id``
  instead of the environment), but process 1 holds at step 4 until the test has sent it a
  SIGTERM; then the same command runs again on its workdir and resumes.

The loss curve and final parameters of ``multi`` must equal those of ``single`` to float
tolerance; the SIGTERM seen by one host must stop both at the same step with a checkpoint,
and the resumed run must end with the parameters of the uninterrupted ones.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from rnnlab import parallel
from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train import metric_log as metrics_lib

ROOT = Path(__file__).resolve().parents[1]
STEPS, PAUSE_AT = 8, 4
TIMEOUT = 300

EXPERIMENT = textwrap.dedent(
    f"""
    from rnnlab.train.config import base_config, lock


    def get_config(arg=""):
        c = base_config()
        c.data.name = "adding"
        c.data.seq_len = 8
        c.data.eval_examples = 16
        c.data.num_threads = 1
        c.model.name = "classifier"
        c.model.hidden_features = 8
        c.optim.lr = 1e-2
        c.train.steps = {STEPS}
        c.train.batch_size = 8
        c.train.log_every = 1
        c.train.eval_every = 0
        c.train.checkpoint_every = 0
        return lock(c)
    """
)

# Runs the real command line, recording which shard of the data each process asks for and,
# when told to, holding at a step until the test has delivered its SIGTERM.
WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    # tensorboardX imports torch when it can (seconds per process); the runs do not need it.
    sys.modules["torch"] = None

    import rnnlab.data

    log = Path(os.environ["SCALEOUT_LOG"])
    who = os.environ["SCALEOUT_WHO"]
    _load = rnnlab.data.load

    def load(cfg, **kw):
        keys = ("split", "batch_size", "shard_index", "shard_count")
        with open(log / f"loads-{who}.jsonl", "a") as f:
            f.write(json.dumps({k: kw[k] for k in keys}) + "\\n")
        return _load(cfg, **kw)

    rnnlab.data.load = load

    pause = int(os.environ.get("SCALEOUT_PAUSE_AT", "0"))
    if pause:
        from rnnlab.train import loop

        _train = loop.train

        def hold(step, state):
            if step == pause:
                (log / "paused").write_text(str(os.getpid()))
                deadline = time.time() + 120
                while not (log / "go").exists() and time.time() < deadline:
                    time.sleep(0.02)

        loop.train = lambda *a, hooks=(), **k: _train(*a, hooks=[*hooks, hold], **k)

    from rnnlab.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)

FSDP = ["--config.mesh.fsdp=2", "--config.sharding.rules=fsdp", "--config.sharding.fsdp_min_dim=8"]


def _free_port(taken):
    """A free local port not handed out before (coordinators start some time later)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


class Launcher:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.script = tmp / "worker.py"
        self.script.write_text(WORKER)
        self.experiment = tmp / "adding_tiny.py"
        self.experiment.write_text(EXPERIMENT)
        self.procs: list[subprocess.Popen] = []
        self.ports: set[int] = set()

    def start(self, name, *, processes, devices, flags=(), env_extra=None, by_flags=False):
        """Starts ``processes`` copies of ``rnnlab train`` on workdir ``tmp/name``; they find
        each other through ``RNNLAB_*`` variables, or ``--coordinator`` etc. (``by_flags``)."""
        log = self.tmp / f"log-{name}"
        log.mkdir(exist_ok=True)
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("RNNLAB_", "JAX_", "XLA_"))
        }
        base.update(
            JAX_PLATFORMS="cpu",
            JAX_NUM_CPU_DEVICES=str(devices),
            PYTHONPATH=str(ROOT),
            SCALEOUT_LOG=str(log),
        )
        port = _free_port(self.ports)
        procs = []
        for pid in range(processes):
            env = dict(base)
            cmd = [sys.executable, str(self.script), "train", "--config", str(self.experiment)]
            cmd += ["--workdir", str(self.tmp / name), *flags]
            if processes > 1 and by_flags:
                cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
                cmd += ["--process-id", str(pid)]
            elif processes > 1:
                env.update(
                    RNNLAB_COORDINATOR=f"127.0.0.1:{port}",
                    RNNLAB_NUM_PROCESSES=str(processes),
                    RNNLAB_PROCESS_ID=str(pid),
                )
            env.update((env_extra or {}).get(pid, {}))
            env["SCALEOUT_WHO"] = str(pid)
            out = open(log / f"out-{pid}.txt", "w")  # noqa: SIM115 (closed in wait)
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
            proc.out_file = out
            procs.append(proc)
        self.procs += procs
        return procs

    def wait(self, procs, deadline):
        for proc in procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.kill_all()
                pytest.fail(f"processes did not finish within {TIMEOUT} s")
            proc.out_file.close()

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


def _output(tmp, name, pid):
    return (tmp / f"log-{name}" / f"out-{pid}.txt").read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaleout")
    launcher = Launcher(tmp)
    deadline = time.time() + TIMEOUT
    try:
        single = launcher.start("single", processes=1, devices=4)
        multi = launcher.start("multi", processes=2, devices=2, flags=FSDP)
        pre = launcher.start(
            "preempted",
            processes=2,
            devices=2,
            flags=FSDP,
            env_extra={1: {"SCALEOUT_PAUSE_AT": str(PAUSE_AT)}},
            by_flags=True,
        )
        marker = tmp / "log-preempted" / "paused"
        while not marker.exists():
            if time.time() > deadline or any(p.poll() is not None for p in pre):
                pytest.fail(
                    "process 1 of the preempted run never reached step "
                    f"{PAUSE_AT}:\n{_output(tmp, 'preempted', 1)[-3000:]}"
                )
            time.sleep(0.05)
        os.kill(pre[1].pid, signal.SIGTERM)  # one host only, as a spot VM shutdown would
        (tmp / "log-preempted" / "go").write_text("")
        launcher.wait(single + multi + pre, deadline)
        for name, procs in (("single", single), ("multi", multi), ("preempted", pre)):
            for pid, proc in enumerate(procs):
                assert proc.returncode == 0, f"{name} {pid}:\n{_output(tmp, name, pid)[-3000:]}"
        after_preemption = sorted(int(p.name) for p in (tmp / "preempted/checkpoints").iterdir())
        first_outputs = [_output(tmp, "preempted", pid) for pid in range(2)]
        resumed = launcher.start("preempted", processes=2, devices=2, flags=FSDP, by_flags=True)
        launcher.wait(resumed, deadline)
        for pid, proc in enumerate(resumed):
            assert proc.returncode == 0, _output(tmp, "preempted", pid)[-3000:]
    finally:
        launcher.kill_all()
    return {
        "tmp": tmp,
        "experiment": launcher.experiment,
        "after_preemption": after_preemption,
        "preempted_outputs": first_outputs,
    }


def _train_records(workdir):
    return [r for r in metrics_lib.read(str(workdir / "metrics.jsonl")) if r["split"] == "train"]


def _final(runs, name):
    config = cfg_lib.load(str(runs["experiment"]))
    run = loop.Run(config, str(runs["tmp"] / name), devices=jax.devices()[:1])
    assert run.checkpoints.latest_step() == STEPS
    state, extra = run.restore(STEPS)
    return parallel.to_host(state), extra


def _assert_params_close(a, b, rtol, atol):
    la, lb = jax.tree_util.tree_leaves_with_path(a.params), jax.tree.leaves(b.params)
    assert len(la) == len(lb) >= 4
    for (path, x), y in zip(la, lb, strict=True):
        np.testing.assert_allclose(y, x, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_two_processes_train_like_one_process_on_four_devices(runs):
    tmp = runs["tmp"]
    single, multi = _train_records(tmp / "single"), _train_records(tmp / "multi")
    # Only process 0 writes the log: every step once.
    assert [r["step"] for r in multi] == list(range(1, STEPS + 1))
    assert [r["step"] for r in single] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "mae"):
        np.testing.assert_allclose(
            [r[key] for r in multi], [r[key] for r in single], rtol=2e-5, err_msg=key
        )
    assert multi[-1]["loss"] < 0.5 * multi[0]["loss"]  # it learnt something
    a, _ = _final(runs, "single")
    b, extra = _final(runs, "multi")
    _assert_params_close(a, b, rtol=2e-5, atol=2e-6)
    assert len(extra["data"]) == 2  # both processes' data positions are in the checkpoint

    out0, out1 = _output(tmp, "multi", 0), _output(tmp, "multi", 1)
    assert "2 process(es), sharding fsdp: mesh data=2 x fsdp=2" in out0
    assert " 0 of " not in out0.split("sharding fsdp:")[1].splitlines()[0]  # something split
    assert f"step {STEPS}/{STEPS}" in out0 and "completed" in out0
    assert "step 1/" not in out1 and "completed" not in out1  # process 1 stays quiet
    # Each process read its own half of every global batch; the single one read it all.
    for pid in range(2):
        loads = [json.loads(x) for x in (tmp / "log-multi" / f"loads-{pid}.jsonl").open()]
        train = [x for x in loads if x["split"] == "train"]
        assert train == [{"split": "train", "batch_size": 4, "shard_index": pid, "shard_count": 2}]
    loads = [json.loads(x) for x in (tmp / "log-single" / "loads-0.jsonl").open()]
    assert {(x["batch_size"], x["shard_index"], x["shard_count"]) for x in loads} == {(8, 0, 1)}


@pytest.mark.slow
def test_sigterm_on_one_host_stops_both_at_the_same_step(runs):
    # Process 1 alone got the signal; both saved step 4 together and stopped there.
    assert runs["after_preemption"] == [PAUSE_AT]
    out0, out1 = runs["preempted_outputs"]
    assert f"preempted at step {PAUSE_AT}" in out0
    assert f"step {PAUSE_AT + 1}/" not in out0
    assert "Traceback" not in out0 + out1


@pytest.mark.slow
def test_resumed_run_ends_like_the_uninterrupted_runs(runs):
    tmp = runs["tmp"]
    resumed, multi = _train_records(tmp / "preempted"), _train_records(tmp / "multi")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in multi], rtol=1e-6)
    a, _ = _final(runs, "multi")
    b, _ = _final(runs, "preempted")
    _assert_params_close(a, b, rtol=1e-6, atol=1e-7)
    c, _ = _final(runs, "single")
    _assert_params_close(c, b, rtol=2e-5, atol=2e-6)
