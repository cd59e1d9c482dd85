"""Every ``tpu/`` command in docs/tpu.md and in the scripts' ``--help`` runs as written, on
a stand-in slice of two workers (tests/tpu_world.py) with the real trainer.

The commands are read from the documents themselves, so an example that names a variant or
a key that does not exist fails here. Each runs under ``DRY_RUN=1``; then the documented
flow runs for real: create, set up, prepare the data, start the documented runs and watch
them reach training (the trainer's headline, which comes after the config, its overrides,
the data and the model have all been checked and built on both processes), read the logs,
stop, delete and go round again, and the spot loop. The TPU recipes are far too large to
train on a CPU, so the runs are stopped once they train; tests/test_tpu_launch.py runs a
small experiment to the end through the same scripts.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tpu_world import ROOT, TPU, World, long_lived_dir

from rnnlab.data.config import data_dir

DOC = ROOT / "docs" / "tpu.md"
ENV_WORD = re.compile(r"^[A-Z_]+=\S*$")
STARTS_WITH_SCRIPT = re.compile(r"^(?:[A-Z_]+=\S*\s+)*tpu/[a-z_]+\.sh\b")
# Words of a usage synopsis, not of a runnable example.
PLACEHOLDER = re.compile(r"\[|\b(EXPERIMENT|RUN|RUN_NAME|TRAIN_ARGS|COMMAND|SESSION|DIR|LINES)\b")
TIMEOUT = 600  # a bound for a loaded machine
# The stand-in trainer's overrides after the documented ones: the recipe's model, mesh and
# dtype on a batch a CPU steps in seconds. A stop waits for the step in progress: at the
# recipe's batch of 512 sequences of 256 it took minutes of CPU per worker. The trainers
# run niced: once they train, until the flow stops them, the scripts under test and the
# rest of the suite come first (decision 140).
# A command started from a terminal has SIGINT at its default; one started by a background
# job of a shell without job control (a script's ``make test &``, a CI runner) inherits it
# ignored, and a shell that starts with SIGINT
# ignored cannot trap it: the spot loop would never see the test's Ctrl-C (decision 142).
# (SIGPIPE and SIGXFSZ too: Python ignores them and an exec would pass that on.)
AS_FROM_A_TERMINAL = (sys.executable, "-c", "import os, signal as s, sys\n"
                      "for n in (s.SIGINT, s.SIGPIPE, s.SIGXFSZ): s.signal(n, s.SIG_DFL)\n"
                      "os.execvp(sys.argv[1], sys.argv[1:])")  # fmt: skip
CPU_BATCH = ("--config.train.batch_size=2", "--config.eval.batch_size=2",
             "--config.data.seq_len=32")  # fmt: skip


def _doc_commands() -> list[str]:
    """The tpu/ command lines of docs/tpu.md's bash blocks (``&&`` chains split)."""
    out, block = [], None
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            block = None if block is not None else line[3:].strip()
            continue
        if block != "bash":
            continue
        text = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
        for part in text.split("&&"):
            if STARTS_WITH_SCRIPT.match(part.strip()):
                out.append(part.strip())
    return out


def _help_examples() -> list[str]:
    """The example command lines in the scripts' --help texts."""
    out = []
    for script in sorted(TPU.glob("*.sh")):
        for line in script.read_text().splitlines()[1:]:
            if not line.startswith("#"):
                break
            text = line[1:].strip()
            if STARTS_WITH_SCRIPT.match(text) and not PLACEHOLDER.search(text):
                out.append(text)
    return out


COMMANDS = sorted(set(_doc_commands() + _help_examples()))


def _split(command: str) -> tuple[dict[str, str], str, list[str]]:
    words = shlex.split(command)
    env = {}
    while ENV_WORD.match(words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words[0].removeprefix("tpu/"), words[1:]


def test_the_documents_name_the_commands_users_need():
    scripts = {_split(c)[1] for c in COMMANDS}
    assert {"create.sh", "setup.sh", "run.sh", "launch.sh", "logs.sh", "stop.sh"} <= scripts
    assert "tpu/run.sh experiments/charlm.py:tpu" in COMMANDS
    assert "SPOT=1 tpu/launch.sh experiments/charlm.py:tpu" in COMMANDS
    assert "tpu/run.sh --name charlm-lr3 experiments/charlm.py:tpu --config.optim.lr=3e-3" in (
        COMMANDS
    )


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path, workers=2, trainer="real", active=False)
    shutil.copytree(data_dir({}) / "austen", w.gcs / "my-bucket" / "rnnlab-data" / "austen")
    yield w
    w.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_command_runs_dry(world, command):
    env, script, args = _split(command)
    world.script(script, *args, DRY_RUN="1", **env)


def test_the_dry_run_example_prints_what_run_sh_prints(world):
    text = DOC.read_text()
    example = text.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    command, printed = example[0].removeprefix("$ "), example[1]
    env, script, args = _split(command)
    (actual,) = world.script(script, *args, **env, PROJECT="my-project", TPU_NAME="rnnlab-tpu",
                             BUCKET="my-bucket").stdout.splitlines()  # fmt: skip
    pattern = ".*".join(re.escape(piece) for piece in printed.split("..."))
    assert re.fullmatch(pattern, actual), (printed, actual)


def _headline(world, run, timeout=TIMEOUT):
    """Waits until worker 0's trainer of ``run`` prints that it starts training."""
    log = world.home(0) / "rnnlab-logs" / f"rnnlab-{run}-t1v-n-fake-w-0.log"
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = log.read_text() if log.exists() else ""
        if re.search(r"parameters, 2 device\(s\), (starting at|resuming from) step", text):
            return text
        # Warnings (e.g. a stopped run's lock taken over) are fine; errors are not.
        assert "Traceback" not in text and "rnnlab: error" not in text, text[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{run} did not start training in {timeout} s:\n{text[-3000:]}")


def _sh(world, command, **env):
    extra, script, args = _split(command)
    return world.script(script, *args, timeout=TIMEOUT, **{**env, **extra})


@pytest.fixture
def long_world():
    """A stand-in slice with real trainers, on ``CPU_BATCH`` and niced."""
    with long_lived_dir("rnnlab-tpu-docs-") as tmp:
        w = World(tmp, workers=2, trainer="real", active=False, train_args=CPU_BATCH, nice=10)
        raw = data_dir({}) / "austen"
        shutil.copytree(raw, w.gcs / "my-bucket" / "rnnlab-data" / "austen")
        yield w
        w.close()


def _slice_ready(world):
    """The user's file and the documented first steps: create, set up, prepare the data."""
    # Settings of the user's file: workdirs on a local path the real trainer can write (the
    # stand-in bucket is a folder, not Cloud Storage), short waits.
    with world.config.open("a") as f:
        f.write(f"WORKDIR_ROOT={world.tmp / 'workdirs'}\nSTOP_TIMEOUT=3\nPOLL_SECONDS=1\n")
        f.write("LOG_COPY_EVERY=5\n")
    for command in ("tpu/create.sh", "tpu/setup.sh", "tpu/data.sh experiments/charlm.py:tpu"):
        _sh(world, command)


# The documented flow in two independent parts, each on its own stand-in slice and its own
# xdist group, so that `make test` runs them on two workers: the runs started by hand, and
# the round by hand followed by the spot loop.
@pytest.mark.slow(8)
@pytest.mark.xdist_group("tpu-docs-runs")
def test_the_documented_runs_train_for_real(long_world):
    world, tmp_path = long_world, long_world.tmp
    _slice_ready(world)

    def sh(command):
        return _sh(world, command)

    sh("tpu/run.sh experiments/charlm.py:tpu")
    headline = _headline(world, "charlm-tpu")
    assert "starting at step 0 of 20000" in headline
    out = sh("tpu/logs.sh charlm-tpu").stdout
    assert "[t1v-n-fake-w-0] language_model on austen" in out
    assert "[t1v-n-fake-w-1] " in out
    saved = tmp_path / "saved"
    sh(f"tpu/logs.sh charlm-tpu --save {saved}")
    assert "language_model on austen" in (saved / "0.log").read_text()
    assert "rnnlab-charlm-tpu" in sh("tpu/status.sh").stdout
    sh("tpu/stop.sh charlm-tpu")
    world.wait_sessions(60)
    # One run at a time on a slice: the second documented run after the first has stopped.
    sh("tpu/run.sh --name charlm-lr3 experiments/charlm.py:tpu --config.optim.lr=3e-3")
    _headline(world, "charlm-lr3")
    sh("tpu/stop.sh charlm-lr3")
    world.wait_sessions(60)
    # The lr override reached the trainer: the workdir's resolved config has it.
    lr3 = world.tmp / "workdirs" / "charlm-lr3" / "config.json"
    assert '"lr": 0.003' in lr3.read_text()
    sh("tpu/delete.sh")
    # The slice prepared nothing twice: worker 1 never prepared.
    assert not any("prepare_data" in c for c in world.worker_commands(1))


@pytest.mark.slow(8)
@pytest.mark.xdist_group("tpu-docs-spot")
def test_the_documented_spot_loop_trains_for_real(long_world):
    world = long_world
    _slice_ready(world)

    def sh(command):
        return _sh(world, command)

    # The round by hand (its last command, run.sh, runs in the test above as written), then
    # the spot loop as documented on that new slice, until it trains; then stopped the
    # documented way.
    for command in ("tpu/delete.sh", "tpu/create.sh", "tpu/setup.sh"):
        sh(command)
    # Its output goes to a file, not a pipe: the bound below is on the loop itself.
    output = world.tmp / "launch.log"
    with output.open("w") as out:
        launch = subprocess.Popen(
            [*AS_FROM_A_TERMINAL, "bash", str(TPU / "launch.sh"), "experiments/charlm.py:tpu"],
            env={**world.env, "SPOT": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own terminal group, for Ctrl-C
        )
    try:
        text = _headline(world, "charlm-tpu")
        assert "starting at step 0 of 20000" in text
    finally:
        os.killpg(launch.pid, signal.SIGINT)  # Ctrl-C: the loop and what it runs now
        # A bound for a hang, not a timing: on a loaded machine the loop's stop can take
        # a minute.
        try:
            launch.wait(timeout=240)
        except subprocess.TimeoutExpired:
            ps = subprocess.run(["ps", "-o", "pid,pgid,stat,etime,args", "-g", str(launch.pid)],
                                capture_output=True, text=True).stdout  # fmt: skip
            os.killpg(launch.pid, signal.SIGKILL)
            calls = Path(world.env["FAKE_CALLS"]).read_text().splitlines()[-15:]
            raise AssertionError(
                f"launch.sh still running 240 s after Ctrl-C:\n{ps}\nlast calls: {calls}\n"
                f"output:\n{output.read_text()[-3000:]}"
            ) from None
    sh("tpu/stop.sh charlm-tpu")
    world.wait_sessions(60)
    sh("tpu/delete.sh")
    # Both slices prepared nothing twice: worker 1 never prepared.
    assert not any("prepare_data" in c for c in world.worker_commands(1))
