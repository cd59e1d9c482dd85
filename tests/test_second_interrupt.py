"""A second Ctrl-C that lands inside orbax's own checkpoint save.

The first Ctrl-C sets the loop's flag: the loop saves the current step and stops. A second
one inside that save used to raise ``KeyboardInterrupt`` in the middle of orbax's call (the
step's temporary directory made, its commit never started); the loop's handler then saved
the same step again, which failed with ``FileExistsError`` (reported with "Free space"
advice), found a step directory that was never committed, or hung (once in 43 trials).

The signals here are real SIGINTs, sent from inside orbax's checkpoint handler while it
writes the arrays, so the interrupt lands where it did by chance. References: the arrays
that were saved, read back; the count of orbax saves of each step; the exit status and
output of a real process, and a rerun that resumes from the saved step.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tools.faults.process import one_cpu_device

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 120  # a hang fails the test instead of stopping the suite


def _bounded(fn):
    """``fn()`` in a daemon thread: its result, or a failure when it does not return in
    :data:`BOUND_S` seconds (the second save used to hang)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # reported in the test's thread
            out["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    assert not worker.is_alive(), f"still running after {BOUND_S} s (hung)"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_a_ctrl_c_inside_orbax_s_save_leaves_one_save_that_completes(tmp_path, monkeypatch):
    """The second Ctrl-C inside orbax's save of step 5, then the save the loop's handler
    makes: before, orbax removed the unfinished step and saved it a second time, or the
    step directory was never committed (an error with disk-space advice)."""
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from rnnlab.train import checkpoint as ckpt_lib

    checkpoints = ckpt_lib.Checkpoints(tmp_path / "checkpoints", keep=2, async_save=True)
    want = np.arange(4096, dtype=np.float32)
    state = {"w": jnp.asarray(want)}
    real = ocp.CompositeCheckpointHandler.async_save
    calls = []

    async def interrupted(self, directory, *args, **kwargs):
        calls.append(str(directory))
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while orbax writes the arrays
        return await real(self, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.CompositeCheckpointHandler, "async_save", interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoints.save(5, state, {"n": 1})
    finally:
        signal.signal(signal.SIGINT, previous)

    # What the loop's KeyboardInterrupt handler does: save the step, wait for the writes.
    def save_again():
        checkpoints.save(5, state, {"n": 1})
        checkpoints.wait()

    _bounded(save_again)
    assert len(calls) == 1, calls  # one save of step 5, never a second
    assert checkpoints.all_steps() == [5]
    assert not [p.name for p in checkpoints.directory.iterdir() if "tmp" in p.name]
    restored, extra = checkpoints.restore({"w": state["w"]}, 5)
    np.testing.assert_array_equal(np.asarray(restored["w"]), want)
    assert extra["n"] == 1
    checkpoints.close()


def test_ctrl_c_held_in_a_block_reaches_the_handlers_in_order_when_it_ends():
    """Two Ctrl-C inside the held block: the block completes, then the first sets the
    loop's flag and the second raises KeyboardInterrupt, as they would have outside it."""
    from rnnlab.train.preemption import PreemptionFlag, interrupts_held

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    flag = PreemptionFlag(signals=(signal.SIGINT,))
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_held():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
                done.append("the block ran to its end")
        assert done and flag.is_set()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        flag.close()
        signal.signal(signal.SIGINT, previous)


SECOND_CTRL_C = """
import signal, sys
from pathlib import Path
import orbax.checkpoint as ocp

real = ocp.CompositeCheckpointHandler.async_save
saves = []

async def async_save(self, directory, *args, **kwargs):
    saves.append(Path(str(directory)).name.split(".")[0])
    print(f"orbax save of step {saves[-1]}", file=sys.stderr, flush=True)
    # The first Ctrl-C lands in the save of step 5 (it sets the loop's flag); the second in
    # the save the flag asks for, at step 6.
    if len(saves) <= 2:
        signal.raise_signal(signal.SIGINT)
    return await real(self, directory, *args, **kwargs)

ocp.CompositeCheckpointHandler.async_save = async_save
from rnnlab import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _train(argv, *, wrapper=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env.setdefault("RNNLAB_DATA_DIR", str(REPO / "data"))
    one_cpu_device(env)
    head = [sys.executable, str(wrapper)] if wrapper else [sys.executable, "-m", "rnnlab.cli"]
    return subprocess.run(  # a hang ends in TimeoutExpired: a failure, not a stuck suite
        [*head, *argv], env=env, capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_a_second_ctrl_c_inside_the_save_exits_130_with_one_save_and_resumes(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SECOND_CTRL_C))
    workdir = tmp_path / "run"
    argv = ["train", "--config", str(REPO / "experiments" / "faults.py"), "--workdir"]
    argv += [str(workdir), "--config.train.steps=10", "--config.sample.length=0"]
    first = _train(argv, wrapper=script)
    err = first.stderr
    assert first.returncode == 130, err[-3000:]
    saves = re.findall(r"orbax save of step (\d+)", err)
    assert saves == ["5", "6"], err[-3000:]  # one save of each step
    for wrong in ("FileExistsError", "Free space", "Traceback", "never committed"):
        assert wrong not in err, err[-3000:]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["5", "6"]

    second = _train(argv)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from step 6 of 10" in second.stdout + second.stderr
    assert "corrupt" not in second.stdout + second.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert (summary["stop_reason"], summary["steps"]) == ("completed", 10)
