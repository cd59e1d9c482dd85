"""How a run ends when a signal comes late: a SIGTERM after the training loop (during the
samples, report or plots) still writes the summary and exits 0 with one line, and a second
Ctrl-C that lands inside a checkpoint save finishes that save instead of starting a second
save of the same step (which failed with FileExistsError or hung).

References: the exit status and files of a real process, and a checkpoint read back
against the arrays that were saved."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SIGTERM_DURING_PLOTS = """
import os, signal, sys, time
from rnnlab.train import plots

def plot_workdir(workdir):  # the platform's SIGTERM arrives while the figures are drawn
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)
    raise AssertionError("the signal did not end the optional work")

plots.plot_workdir = plot_workdir
from rnnlab import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_sigterm_after_the_loop_writes_the_summary_and_exits_0(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SIGTERM_DURING_PLOTS))
    workdir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env.setdefault("RNNLAB_DATA_DIR", str(REPO / "data"))
    argv = ["train", "--config", str(REPO / "experiments" / "faults.py"), "--workdir"]
    argv += [str(workdir), "--config.train.steps=5"]
    proc = subprocess.run(
        [sys.executable, str(script), *argv], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SIGTERM after the last checkpoint (step 5)" in proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 5 and summary["stop_reason"] == "completed"
    assert summary["end_of_run_skipped"] == "SIGTERM"


def test_a_second_interrupt_inside_a_save_finishes_that_save(tmp_path, monkeypatch):
    import jax.numpy as jnp

    from rnnlab.train import checkpoint as ckpt_lib

    checkpoints = ckpt_lib.Checkpoints(tmp_path / "checkpoints", keep=2, async_save=True)
    want = np.arange(4096, dtype=np.float32)
    state = {"w": jnp.asarray(want)}
    real = type(checkpoints.manager).save

    def interrupted(self, *args, **kwargs):  # Ctrl-C right after orbax started writing
        real(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(checkpoints.manager), "save", interrupted)
    try:
        checkpoints.save(5, state, {"n": 1})
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(type(checkpoints.manager), "save", real)
    # What the loop's KeyboardInterrupt handler does: save the step, wait for the writes.
    assert checkpoints.save(5, state, {"n": 1}) is False
    checkpoints.wait()
    assert checkpoints.all_steps() == [5]
    restored, extra = checkpoints.restore({"w": state["w"]}, 5)
    np.testing.assert_array_equal(np.asarray(restored["w"]), want)
    assert extra["n"] == 1
    checkpoints.close()


def test_a_guard_that_restores_keeps_a_checkpoint_older_than_its_window(tmp_path):
    """Checkpoints every 5 steps, keep 1, a window of 15 steps: at every save a checkpoint
    at most latest - 15 must exist (the divergence guard restores from before its window),
    and nothing older than the newest such one is kept."""
    import jax.numpy as jnp

    from rnnlab.train import checkpoint as ckpt_lib

    checkpoints = ckpt_lib.Checkpoints(
        tmp_path / "checkpoints", keep=1, async_save=False, keep_before=15
    )
    for step in range(5, 55, 5):
        checkpoints.save(step, {"w": jnp.zeros(2)}, {})
        steps = sorted(checkpoints.all_steps())
        old = [s for s in range(5, step + 1, 5) if s <= step - 15]
        want = [s for s in range(5, step + 1, 5) if not old or s >= max(old)]
        assert steps == want, (step, steps)
    checkpoints.close()


def test_the_guard_window_covers_the_divergence_patience_and_the_nonfinite_checks():
    from rnnlab.train import config as cfg_lib
    from rnnlab.train.run import guard_window

    config = cfg_lib.load(str(REPO / "experiments" / "faults.py"))
    assert guard_window(config) == 0  # "stop": nothing to restore
    restore = cfg_lib.override(config, ["train.nonfinite_action=restore"])
    # faults: divergence_patience 3 x log_every 5 = 15 > 2 x max_nonfinite 3 = 6
    assert guard_window(restore) == 15


def test_a_model_too_large_for_memory_is_refused_with_its_numbers(tmp_path, capsys, monkeypatch):
    """hidden_features=200000 used to hang with no output in device_get(state.step). The
    LSTM's recurrent kernel alone is 4H x H float32: 16 H^2 bytes = 596.05 GiB."""
    import re

    from rnnlab import cli

    monkeypatch.setenv("RNNLAB_DATA_DIR", os.environ.get("RNNLAB_DATA_DIR", str(REPO / "data")))
    argv = ["train", "--config", str(REPO / "experiments" / "faults.py"), "--workdir"]
    argv += [str(tmp_path / "run"), "--config.train.batch_size=8"]
    assert cli.main([*argv, "--config.model.hidden_features=200000"]) == 1
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("rnnlab: error")][0]
    assert "does not fit in memory" in line and "hidden_features" in line
    state, grads = (float(x) for x in re.findall(r"([\d.]+) GiB", line)[:2])
    kernel = 16 * 200000**2 / 1024**3
    assert kernel <= grads < kernel * 1.001  # the other parameters are O(H)
    assert 3 * kernel <= state < 3 * kernel * 1.001  # Adam: parameters, mu and nu
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_step_too_large_for_what_is_free_is_refused_before_it_runs(monkeypatch):
    """The compiled step's memory analysis: an (N, N) float32 product needs at least its
    4 N^2 output bytes; with 1 MiB free it is refused, naming the numbers."""
    import re

    import jax
    import jax.numpy as jnp
    import pytest

    from rnnlab.train import memory

    monkeypatch.setattr(memory, "host_available", lambda: (2**20, "1 MiB free (test)"))
    n = 2048
    step = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b)
    a = jnp.ones((n, n), jnp.float32)
    with pytest.raises(memory.OutOfMemoryError) as info:
        memory.check_step(step, a, a)
    text = str(info.value)
    temp, out = (float(x) for x in re.findall(r"([\d.]+) GiB", text)[:2])
    assert out * 1024**3 >= 4 * n * n * 0.999  # the (N, N) float32 result
    assert "1 MiB free (test)" in text
    monkeypatch.setattr(memory, "host_available", lambda: (2**40, "1 TiB free (test)"))
    compiled = memory.check_step(step, a, a)
    np.testing.assert_allclose(np.asarray(compiled(a, a))[0, :4], n * np.tanh(n), rtol=1e-5)


def test_the_ahead_of_time_step_runs_its_own_shapes_and_the_jitted_step_any_other():
    """A variable-length dataset pads each batch to its own longest sequence: the executable
    compiled for the first batch's shapes refuses a batch of another length, so such a
    batch goes to the jitted step (JapaneseVowels: compiled for [32, 16, 12], then
    called with [32, 24, 12])."""
    import jax
    import jax.numpy as jnp

    from rnnlab.train.loop import _first_shape_compiled

    jitted = jax.jit(lambda s, b: (s + b["inputs"].sum(), b["inputs"].shape[1]))
    first = {"inputs": jnp.ones((2, 3, 4))}
    step = _first_shape_compiled(jitted.lower(0.0, first).compile(), jitted, first)
    assert step(0.0, first) == (24.0, 3)
    assert step(1.0, {"inputs": jnp.ones((2, 5, 4))}) == (41.0, 5)
