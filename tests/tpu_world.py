"""A local stand-in for a Cloud TPU slice, for the tests of the tpu/*.sh scripts.

A stand-in ``gcloud`` keeps the slice's state in a folder: ``create`` makes one home folder
per worker (copied from a stand-in machine image), ``ssh --worker=all`` runs the command in
a local bash in every worker's home at once, ``scp`` copies into them, ``storage`` commands
act on a local folder that stands in for Cloud Storage (``gs://b/p`` is ``<gcs>/b/p``), and
``delete`` (or a simulated spot preemption) removes the workers with everything on their
disks. Each worker sees the environment a TPU VM's process would: its own ``HOME`` and host
name, and the coordinator address, process count and process id that JAX would discover
from the TPU metadata, here as ``RNNLAB_COORDINATOR`` etc., so that several workers run one
multi-process program through ``rnnlab.parallel.initialize`` on localhost. A stand-in
``tmux`` starts sessions as detached process groups. Every call is logged as JSON lines. The
stand-in programs themselves are in tests/tpu_stand_ins.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tpu_stand_ins import (
    CONFIG,
    FAKE_COMPILE,
    FAKE_GCLOUD,
    FAKE_HOSTNAME,
    FAKE_PYTHON,
    FAKE_TMUX,
    FAKE_TRAINER,
    REAL_TRAINER,
    alive,
)

ROOT = Path(__file__).resolve().parents[1]
TPU = ROOT / "tpu"


def _tool(path: Path, text: str, python: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{text}" if python else text)
    path.chmod(0o755)


class World:
    """Stand-in tools on PATH, a settings file, and a slice of ``workers`` workers whose
    ``rnnlab`` is ``trainer``: ``"fake"`` (records its arguments) or ``"real"`` (the command
    line; a train command gets ``train_args`` after its own, and runs at niceness ``nice``)."""

    def __init__(
        self,
        tmp: Path,
        *,
        workers: int = 1,
        trainer: str = "fake",
        active=True,
        train_args=(),
        nice: int = 0,
    ):
        self.tmp = tmp
        self.workers = workers
        bin_dir, image = tmp / "bin", tmp / "image"
        _tool(bin_dir / "gcloud", FAKE_GCLOUD)
        _tool(bin_dir / "rnnlab-compile", FAKE_COMPILE)
        _tool(bin_dir / "tmux", FAKE_TMUX)
        _tool(bin_dir / "hostname", FAKE_HOSTNAME % shutil.which("hostname"), python=False)
        _tool(image / ".local" / "bin" / "uv", "#!/bin/sh\nexit 0\n", python=False)
        _tool(image / "rnnlab-venv" / "bin" / "python", FAKE_PYTHON % sys.executable, False)
        rnnlab = image / "rnnlab-venv" / "bin" / "rnnlab"
        if trainer == "real":
            _tool(
                rnnlab,
                REAL_TRAINER % (nice, sys.executable, json.dumps(list(train_args))),
                python=False,
            )
        else:
            _tool(rnnlab, FAKE_TRAINER)
        # The code folder as a sync leaves it (the tests that sync replace it).
        shutil.copytree(TPU, image / "rnnlab" / "tpu")
        self.gcs = tmp / "gcs"
        self.gcs.mkdir()
        self.config = tmp / "tpu.env"
        self.config.write_text(CONFIG)
        self.env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp / "local-home"),
            "TMPDIR": str(tmp),
            "RNNLAB_TPU_CONFIG": str(self.config),
            "FAKE_CALLS": str(tmp / "calls.jsonl"),
            "FAKE_ROOT": str(tmp / "slice"),
            "FAKE_GCS": str(self.gcs),
            "FAKE_IMAGE": str(image),
            "FAKE_WORKERS": str(workers),
            "FAKE_TRAIN": str(tmp / "train.jsonl"),
            "RNNLAB_COMPILE": str(bin_dir / "rnnlab-compile"),
            "FAKE_COMPILES": str(tmp / "compiles.jsonl"),
            "TFDS_DISABLE_GCS": "1",
            "NO_GCE_CHECK": "true",
        }
        (tmp / "slice").mkdir()
        if active:
            self.gcloud("compute", "tpus", "queued-resources", "create", "test-tpu-qr")
            Path(self.env["FAKE_CALLS"]).unlink()

    def home(self, worker: int = 0) -> Path:
        return self.tmp / "slice" / "workers" / f"w{worker}"

    def gcloud(self, *args):
        subprocess.run(["gcloud", *args], env=self.env, check=True, timeout=60)

    def script(self, name, *args, tpu_dir=TPU, check=True, timeout=60, **env):
        result = subprocess.run(
            ["bash", str(tpu_dir / name), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, result.stderr[-4000:]
        return result

    def dry(self, name, *args, **env):
        """The commands a script prints under DRY_RUN=1, each split into its argv."""
        out = self.script(name, *args, DRY_RUN="1", **env).stdout
        assert not Path(self.env["FAKE_CALLS"]).exists(), "a dry run must not call gcloud"
        return [shlex.split(line) for line in out.splitlines()]

    def calls(self, tool=None):
        path = Path(self.env["FAKE_CALLS"])
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if tool is None or c[0] == tool]

    def compiles(self):
        """The argument lists `rnnlab compile` was called with, in order."""
        path = Path(self.env["FAKE_COMPILES"])
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def worker_commands(self, worker):
        path = self.tmp / "slice" / f"commands-w{worker}.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def preempt(self):
        """Preempts the slice the way a spot reclaim does."""
        self.gcloud("fake", "preempt")

    def history(self):
        path = self.tmp / "slice" / "history.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def session_pids(self):
        pids = []
        for i in range(self.workers):
            state = self.home(i) / ".fake-tmux.json"
            if state.exists():
                pids += [p for p in json.loads(state.read_text()).values() if p]
        return pids

    def wait_sessions(self, timeout):
        """Waits until no session runs on any worker."""
        deadline = time.time() + timeout
        while any(alive(p) for p in self.session_pids()):
            if time.time() > deadline:
                raise TimeoutError(f"sessions still running after {timeout} s")
            time.sleep(0.1)

    def close(self):
        """Ends the sessions this world started (by their own process groups)."""
        for pid in self.session_pids():
            if alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass


@contextlib.contextmanager
def long_lived_dir(prefix: str):
    """A temporary folder for runs of minutes. pytest's own ``tmp_path`` folders are removed
    by later pytest sessions of the same user (it keeps the last few), which on a shared
    machine can happen while a long run still writes to them."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
