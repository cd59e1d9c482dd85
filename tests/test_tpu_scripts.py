"""The tpu/*.sh scripts: the exact gcloud commands they print (DRY_RUN=1), and what those
commands do when a stand-in gcloud runs each worker's command in a local bash with
stand-ins for tmux and the trainer.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TPU = ROOT / "tpu"

CONFIG = """\
PROJECT=my-project
ZONE=us-central2-b
TPU_NAME=test-tpu
ACCELERATOR_TYPE=v4-32
RUNTIME_VERSION=tpu-ubuntu2204-base
BUCKET=gs://my-bucket/
SPOT=0
STOP_TIMEOUT=20
"""

FAKE_GCLOUD = r"""
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(["gcloud", *args]) + "\n")
home = os.environ["FAKE_HOME"]
if args[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
    opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    env = dict(os.environ, HOME=home)
    r = subprocess.run(["bash", "-c", opts["command"]], cwd=home, env=env,
                       capture_output=True, text=True)
    if "output-directory" in opts:
        with open(os.path.join(opts["output-directory"], "0.log"), "w") as f:
            f.write(r.stdout)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
if args[:4] == ["compute", "tpus", "tpu-vm", "scp"]:
    src, dest = args[4], args[5]
    shutil.copy(src, os.path.join(home, dest.split(":", 1)[1]))
if args[:4] == ["compute", "tpus", "queued-resources", "describe"]:
    print("ACTIVE")
"""

FAKE_TMUX = r"""
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(["tmux", *args]) + "\n")
state_file = os.environ["FAKE_TMUX_STATE"]
state = json.load(open(state_file)) if os.path.exists(state_file) else {}

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False

def target():
    name = args[args.index("-t") + 1]
    assert name.startswith("="), "sessions must be addressed by exact name"
    return name[1:]

if args[0] == "has-session":
    sys.exit(0 if target() in state and alive(state[target()]) else 1)
if args[0] == "list-panes":
    print(state[target()])
elif args[0] == "kill-session":
    state.pop(target(), None)
elif args[0] == "new-session":
    name, command = args[args.index("-s") + 1], args[-1]
    state[name] = 0
    json.dump(state, open(state_file, "w"))
    sys.exit(subprocess.run(["bash", "-c", command]).returncode)
json.dump(state, open(state_file, "w"))
"""

FAKE_TRAINER = r"""
import json, os, sys
with open(os.environ["FAKE_TRAIN"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                        "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
                        "tfds": os.environ.get("TFDS_DATA_DIR")}) + "\n")
print("step 1 loss 2.5")
"""


def _tool(path: Path, source: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)


@pytest.fixture
def world(tmp_path):
    """A settings file, stand-in tools on PATH, and a fake worker home directory."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    home.mkdir()
    _tool(bin_dir / "gcloud", FAKE_GCLOUD)
    _tool(bin_dir / "tmux", FAKE_TMUX)
    _tool(home / "rnnlab-venv" / "bin" / "rnnlab", FAKE_TRAINER)
    (home / "rnnlab").mkdir()
    config = tmp_path / "tpu.env"
    config.write_text(CONFIG)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "local-home"),
        "TMPDIR": str(tmp_path),
        "RNNLAB_TPU_CONFIG": str(config),
        "FAKE_CALLS": str(tmp_path / "calls.jsonl"),
        "FAKE_HOME": str(home),
        "FAKE_TMUX_STATE": str(tmp_path / "tmux.json"),
        "FAKE_TRAIN": str(tmp_path / "train.jsonl"),
    }
    return {"env": env, "tmp": tmp_path, "home": home}


def script(world, name, *args, tpu_dir=TPU, check=True, **env):
    result = subprocess.run(
        ["bash", str(tpu_dir / name), *args],
        env={**world["env"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def dry(world, name, *args, **env):
    """The commands a script prints under DRY_RUN=1, each split into its argv."""
    out = script(world, name, *args, DRY_RUN="1", **env).stdout
    assert not Path(world["env"]["FAKE_CALLS"]).exists(), "a dry run must not call gcloud"
    return [shlex.split(line) for line in out.splitlines()]


def calls(world, tool=None):
    path = Path(world["env"]["FAKE_CALLS"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [c for c in map(json.loads, lines) if tool is None or c[0] == tool]


LOCATION = ["--project=my-project", "--zone=us-central2-b"]


def flag(argv, name):
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return value


def test_create_on_demand(world):
    assert dry(world, "create.sh") == [
        ["gcloud", "compute", "tpus", "tpu-vm", "create", "test-tpu", *LOCATION,
         "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base"]
    ]  # fmt: skip


def test_create_spot_uses_a_queued_resource(world):
    create, describe = dry(world, "create.sh", SPOT="1")
    assert create == [
        "gcloud", "compute", "tpus", "queued-resources", "create", "test-tpu-qr", *LOCATION,
        "--node-id=test-tpu", "--accelerator-type=v4-32",
        "--runtime-version=tpu-ubuntu2204-base", "--spot",
    ]  # fmt: skip
    assert describe[:6] == [
        "gcloud",
        "compute",
        "tpus",
        "queued-resources",
        "describe",
        "test-tpu-qr",
    ]


def test_create_queued_on_demand_has_no_spot_flag(world):
    create, _ = dry(world, "create.sh", QUEUED="1", QUEUED_RESOURCE="my-qr")
    assert create[4:6] == ["create", "my-qr"] and "--spot" not in create


def test_create_waits_for_the_queued_resource_when_run(world):
    script(world, "create.sh", SPOT="1")
    assert [c[4] for c in calls(world, "gcloud")] == ["create", "describe"]


def test_delete_matches_the_way_the_slice_was_created(world):
    assert dry(world, "delete.sh") == [
        ["gcloud", "compute", "tpus", "tpu-vm", "delete", "test-tpu", *LOCATION]
    ]
    (cmd,) = dry(world, "delete.sh", SPOT="1")
    assert cmd[3:6] == ["queued-resources", "delete", "test-tpu-qr"] and "--force" in cmd


def test_environment_overrides_the_settings_file(world):
    (cmd,) = dry(world, "create.sh", TPU_NAME="other-tpu", ZONE="europe-west4-a")
    assert cmd[5] == "other-tpu" and "--zone=europe-west4-a" in cmd


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RNNLAB_TPU_CONFIG": "/nonexistent/tpu.env"}, "copy tpu/config.env.example"),
        ({"SPOT": "yes"}, "SPOT must be 0 or 1, got 'yes'"),
        ({"TPU_NAME": "My_TPU"}, "TPU_NAME must be lower-case"),
        ({"PROJECT": ""}, "PROJECT is not set"),
        ({"REMOTE_DIR": "/abs/path"}, "REMOTE_DIR must be a path relative"),
    ],
)
def test_bad_settings_are_named(world, env, message):
    result = script(world, "create.sh", check=False, DRY_RUN="1", **env)
    assert result.returncode == 2 and message in result.stderr


def _run_commands(cmd):
    """(outer remote command, tmux session, inner command) of a printed run.sh line."""
    remote = flag(cmd, "command")
    words = shlex.split(remote)
    at = words.index("new-session")
    assert words[at + 1 : at + 3] == ["-d", "-s"]
    return remote, words[at + 3], words[at + 4]


def test_run_prints_one_ssh_to_all_workers_with_a_named_session(world):
    (cmd,) = dry(world, "run.sh", "experiments/char lm.py:tpu", "--note", "it's a test")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "test-tpu"]
    assert "--worker=all" in cmd and all(f in cmd for f in LOCATION)
    remote, session, inner = _run_commands(cmd)
    assert session == "rnnlab-char-lm-tpu"
    # The previous run is found by the session's exact name, never by process names.
    assert "tmux has-session -t =rnnlab-char-lm-tpu" in remote
    assert 'kill -TERM "$pid"' in remote
    assert not any(word in remote for word in ("pkill", "killall", "pgrep"))
    train = shlex.split(inner.split("exec ", 1)[1].split(" >> ")[0])
    assert train == [
        "$HOME/rnnlab-venv/bin/rnnlab", "train", "--config", "experiments/char lm.py:tpu",
        "--workdir", "gs://my-bucket/rnnlab/char-lm-tpu", "--note", "it's a test",
    ]  # fmt: skip


def test_run_executes_the_trainer_with_every_argument_intact(world):
    args = ["--config.model.hidden=512", "--note", 'two words "quoted" $HOME `x`']
    script(world, "run.sh", "--name", "exp1", "experiments/charlm.py:tpu", *args,
           DATA_DIR="gs://my-bucket/tfds")  # fmt: skip
    (train,) = [
        json.loads(line) for line in Path(world["env"]["FAKE_TRAIN"]).read_text().splitlines()
    ]
    assert train["argv"] == [
        "train", "--config", "experiments/charlm.py:tpu",
        "--workdir", "gs://my-bucket/rnnlab/exp1", *args,
    ]  # fmt: skip
    assert train["cwd"] == str(world["home"] / "rnnlab")
    assert train["unbuffered"] == "1" and train["tfds"] == "gs://my-bucket/tfds"
    # One log per worker, named after the session and the worker's host name.
    log = world["home"] / "rnnlab-logs" / f"rnnlab-exp1-{socket.gethostname()}.log"
    text = log.read_text()
    assert "start rnnlab-exp1" in text and "step 1 loss 2.5" in text
    # What ran is exactly what a dry run prints.
    (gcloud,) = calls(world, "gcloud")
    Path(world["env"]["FAKE_CALLS"]).unlink()
    (printed,) = dry(world, "run.sh", "--name", "exp1", "experiments/charlm.py:tpu", *args,
                     DATA_DIR="gs://my-bucket/tfds")  # fmt: skip
    assert printed == gcloud


@pytest.fixture
def old_run(world):
    """A process standing in for a trainer already running in session rnnlab-exp1."""
    proc = subprocess.Popen(["sleep", "60"])
    Path(world["env"]["FAKE_TMUX_STATE"]).write_text(json.dumps({"rnnlab-exp1": proc.pid}))
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_stop_sends_sigterm_to_the_sessions_process_only(world, old_run):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        script(world, "stop.sh", "exp1")
        assert old_run.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    tmux = calls(world, "tmux")
    assert ["tmux", "kill-session", "-t", "=rnnlab-exp1"] in tmux


def test_run_stops_the_previous_run_before_starting(world, old_run):
    script(world, "run.sh", "--name", "exp1", "experiments/charlm.py:tpu")
    assert old_run.wait(timeout=10) == -signal.SIGTERM
    ops = [c[1] for c in calls(world, "tmux")]
    assert ops.index("list-panes") < ops.index("new-session")


def test_logs_tail_and_follow_every_worker_or_one(world):
    (cmd,) = dry(world, "logs.sh", "experiments/charlm.py:tpu", "-f", "-n", "5")
    assert "--worker=all" in cmd
    remote = flag(cmd, "command")
    assert remote.startswith('tail -n 5 -F "$HOME"/rnnlab-logs/rnnlab-charlm-tpu-"$(hostname)".log')
    (cmd,) = dry(world, "logs.sh", "charlm-tpu", WORKER="0")
    assert "--worker=0" in cmd and "-F" not in flag(cmd, "command")


def test_logs_save_one_file_per_worker(world):
    log_dir = world["home"] / "rnnlab-logs"
    log_dir.mkdir()
    (log_dir / f"rnnlab-exp1-{socket.gethostname()}.log").write_text("step 7 loss 1.0\n")
    out = world["tmp"] / "saved"
    script(world, "logs.sh", "exp1", "--save", str(out))
    assert (out / "0.log").read_text() == "step 7 loss 1.0\n"
    result = script(world, "logs.sh", "exp1", "-n", "1")
    assert result.stdout == f"[{socket.gethostname()}] step 7 loss 1.0\n"


def test_setup_syncs_then_installs_jax_tpu_and_the_project_on_all_workers(world):
    *sync, install = dry(world, "setup.sh")
    assert [c[4] for c in sync[1:]] == ["scp", "ssh"]
    assert all("--worker=all" in c for c in sync[1:] + [install])
    remote = flag(install, "command")
    assert "uv venv --seed --python 3.12" in remote
    assert "pip install --quiet 'jax[tpu]' -e \"$HOME\"/rnnlab'[train,gcs]'" in remote


def test_sync_copies_tracked_and_untracked_files_but_not_ignored_ones(world):
    repo = world["tmp"] / "repo"
    shutil.copytree(TPU, repo / "tpu")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    (repo / "new file.py").write_text("y = 2\n")
    (repo / "gone.py").write_text("")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "big").write_text("do not copy")
    (repo / ".gitignore").write_text(".venv/\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "pkg", ".gitignore", "gone.py", "tpu"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (repo / "gone.py").unlink()
    stale = world["home"] / "rnnlab" / "stale.py"
    stale.write_text("")
    script(world, "sync.sh", tpu_dir=repo / "tpu")
    synced = world["home"] / "rnnlab"
    assert (synced / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert (synced / "new file.py").exists() and (synced / "tpu" / "run.sh").exists()
    assert not (synced / ".venv").exists() and not (synced / "gone.py").exists()
    assert not stale.exists() and not (world["home"] / "rnnlab-src.tar.gz").exists()
    scp = [c for c in calls(world, "gcloud") if c[4] == "scp"]
    assert len(scp) == 1 and "--worker=all" in scp[0]


def test_status_and_ssh(world):
    describe, workers = dry(world, "status.sh")
    assert describe[4:6] == ["describe", "test-tpu"] and "--worker=all" in workers
    (cmd,) = dry(world, "ssh.sh", "df -h ~", WORKER="0")
    assert flag(cmd, "command") == "df -h ~" and "--worker=0" in cmd


def test_scripts_refuse_missing_arguments(world):
    assert "EXPERIMENT is missing" in script(world, "run.sh", check=False).stderr
    assert "exactly one RUN" in script(world, "stop.sh", check=False).stderr
    assert "RUN is missing" in script(world, "logs.sh", check=False).stderr
