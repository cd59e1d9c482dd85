"""The tpu/*.sh scripts: the exact gcloud commands they print (DRY_RUN=1), compared with
the forms in Google's documentation, and what those commands do when a stand-in gcloud runs
each worker's command in a local bash (tests/tpu_world.py) with a stand-in trainer.

The documented forms checked here:
- https://cloud.google.com/sdk/gcloud/reference/compute/tpus/queued-resources/create
- https://cloud.google.com/sdk/gcloud/reference/compute/tpus/queued-resources/delete
- https://cloud.google.com/sdk/gcloud/reference/compute/tpus/tpu-vm/create
- https://cloud.google.com/sdk/gcloud/reference/compute/tpus/tpu-vm/ssh and .../tpu-vm/scp
  (``--internal-ip``), https://cloud.google.com/sdk/gcloud/reference/alpha/compute/tpus/tpu-vm/scp
  (``--tunnel-through-iap``)
- https://cloud.google.com/sdk/gcloud/reference/storage/rsync, .../storage/cp, .../storage/ls
"""

import json
import shlex
import shutil
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest
from tpu_world import ROOT, TPU, World

LOCATION = ["--project=my-project", "--zone=us-central2-b"]
QR = ["gcloud", "compute", "tpus", "queued-resources"]
VM = ["gcloud", "compute", "tpus", "tpu-vm"]
HOST0 = "t1v-n-fake-w-0"


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def flag(argv, name):
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return value


def test_create_uses_a_queued_resource_by_default(world):
    create, describe = world.dry("create.sh")
    assert create == [
        *QR, "create", "test-tpu-qr", *LOCATION, "--node-id=test-tpu",
        "--accelerator-type=v4-32", "--runtime-version=tpu-ubuntu2204-base",
    ]  # fmt: skip
    assert describe == [*QR, "describe", "test-tpu-qr", *LOCATION, "--format=value(state.state)"]


def test_create_spot_reserved_and_every_knob(world):
    knobs = dict(
        VALID_UNTIL="6h",
        NETWORK="my-net",
        SUBNETWORK="my-subnet",
        SERVICE_ACCOUNT="tpu@my-project.iam.gserviceaccount.com",
        INTERNAL_IPS="1",
    )
    create, _ = world.dry("create.sh", SPOT="1", **knobs)
    assert create == [
        *QR, "create", "test-tpu-qr", *LOCATION, "--node-id=test-tpu",
        "--accelerator-type=v4-32", "--runtime-version=tpu-ubuntu2204-base",
        "--network=my-net", "--subnetwork=my-subnet",
        "--service-account=tpu@my-project.iam.gserviceaccount.com", "--internal-ips",
        "--spot", "--valid-until-duration=6h",
    ]  # fmt: skip
    create, _ = world.dry("create.sh", RESERVED="1", QUEUED_RESOURCE="my-qr")
    assert create[4:6] == ["create", "my-qr"] and create[-1] == "--reserved"
    assert "--spot" not in create


def test_create_directly_when_not_queued(world):
    assert world.dry("create.sh", QUEUED="0", SPOT="1", NETWORK="n") == [
        [*VM, "create", "test-tpu", *LOCATION, "--accelerator-type=v4-32",
         "--version=tpu-ubuntu2204-base", "--network=n", "--spot"]
    ]  # fmt: skip


def test_create_waits_for_the_queued_resource_when_run(tmp_path):
    world = World(tmp_path, active=False)
    world.script("create.sh", SPOT="1", POLL_SECONDS="0")
    assert [c[4] for c in world.calls("gcloud")] == ["create", "describe"]
    assert (world.home(0) / "rnnlab-venv").is_dir()


def test_delete_matches_the_way_the_slice_was_created(world):
    assert world.dry("delete.sh") == [[*QR, "delete", "test-tpu-qr", *LOCATION, "--force"]]
    assert world.dry("delete.sh", "--yes", QUEUED="0") == [
        [*VM, "delete", "test-tpu", *LOCATION, "--quiet"]
    ]


def test_environment_overrides_the_settings_file(world):
    create, _ = world.dry("create.sh", TPU_NAME="other-tpu", ZONE="europe-west4-a")
    assert create[5] == "other-tpu-qr" and "--node-id=other-tpu" in create
    assert "--zone=europe-west4-a" in create


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RNNLAB_TPU_CONFIG": "/nonexistent/tpu.env"}, "copy tpu/config.env.example"),
        ({"SPOT": "yes"}, "SPOT must be 0 or 1, got 'yes'"),
        ({"SPOT": "1", "RESERVED": "1"}, "SPOT=1 and RESERVED=1 exclude each other"),
        ({"QUEUED": "0", "VALID_UNTIL": "6h"}, "VALID_UNTIL='6h' needs a queued resource"),
        ({"VALID_UNTIL": "tomorrow"}, "VALID_UNTIL must be a duration"),
        ({"SSH_VIA": "vpn"}, "SSH_VIA must be external, internal or iap, got 'vpn'"),
        ({"TPU_NAME": "My_TPU"}, "TPU_NAME must be lower-case"),
        ({"PROJECT": ""}, "PROJECT is not set"),
        ({"REMOTE_DIR": "/abs/path"}, "REMOTE_DIR must be a path relative"),
        ({"DATA_DIR": "rnnlab/data"}, "DATA_DIR (rnnlab/data) must be outside REMOTE_DIR"),
    ],
)
def test_bad_settings_are_named(world, env, message):
    result = world.script("create.sh", check=False, DRY_RUN="1", **env)
    assert result.returncode == 2 and message in result.stderr


def _run_commands(cmd):
    """(outer remote command, tmux session, inner command) of a printed run.sh line."""
    remote = flag(cmd, "command")
    words = shlex.split(remote)
    at = words.index("new-session")
    assert words[at + 1 : at + 3] == ["-d", "-s"]
    return remote, words[at + 3], words[at + 4]


def test_run_prepares_data_then_starts_one_named_session_on_all_workers(world):
    prepare, pull, cmd = world.dry("run.sh", "experiments/char lm.py:tpu", "--note", "it's a test")
    assert prepare[:6] == [*VM, "ssh", "test-tpu"] and "--worker=0" in prepare
    assert pull[:6] == [*VM, "ssh", "test-tpu"] and "--worker=all" in pull
    assert cmd[:6] == [*VM, "ssh", "test-tpu"]
    assert "--worker=all" in cmd and all(f in cmd for f in LOCATION)
    remote, session, inner = _run_commands(cmd)
    assert session == "rnnlab-char-lm-tpu"
    # The previous run is found by the session's exact name, never by process names.
    assert "tmux has-session -t =rnnlab-char-lm-tpu" in remote
    assert 'kill -TERM "$pid"' in remote
    assert not any(word in remote for word in ("pkill", "killall", "pgrep"))
    words = shlex.split(inner.split("exec bash ", 1)[1])
    assert words == [
        "tpu/worker.sh", "rnnlab-char-lm-tpu", "$HOME/rnnlab-logs",
        "gs://my-bucket/rnnlab/char-lm-tpu", "60", "--",
        "$HOME/rnnlab-venv/bin/rnnlab", "train", "--config", "experiments/char lm.py:tpu",
        "--workdir", "gs://my-bucket/rnnlab/char-lm-tpu", "--note", "it's a test",
    ]  # fmt: skip
    assert 'RNNLAB_DATA_DIR="$HOME"/rnnlab-data' in inner


def test_ssh_and_scp_reach_workers_by_internal_ip_or_iap(world):
    (*_, internal) = world.dry("run.sh", "--no-data", "x.py", SSH_VIA="internal")
    assert internal[:6] == [*VM, "ssh", "test-tpu"] and "--internal-ip" in internal
    (*_, iap) = world.dry("run.sh", "--no-data", "x.py", SSH_VIA="iap")
    assert iap[:7] == ["gcloud", "alpha", "compute", "tpus", "tpu-vm", "ssh", "test-tpu"]
    assert "--tunnel-through-iap" in iap and "--internal-ip" not in iap
    _, scp, _ = world.dry("sync.sh", SSH_VIA="iap")
    assert scp[:6] == ["gcloud", "alpha", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[-2:] == ["--worker=all", "--tunnel-through-iap"]


def test_data_copies_never_delete(world):
    prepare, pull = world.dry("data.sh", "experiments/faults.py", WORKDIR_PREFIX="lab")
    remote = flag(prepare, "command")
    store, data = "gs://my-bucket/lab-data", '"$HOME"/rnnlab-data'
    assert f"gcloud storage rsync {store} {data} --recursive" in remote
    assert f"gcloud storage rsync {data} {store} --recursive" in remote
    assert "tpu/prepare_data.py experiments/faults.py" in remote
    assert flag(pull, "command").endswith(
        'gcloud storage rsync gs://my-bucket/lab-data "$HOME"/rnnlab-data --recursive'
    )
    assert "delete" not in remote + flag(pull, "command")


def _train_records(world):
    path = Path(world.env["FAKE_TRAIN"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_executes_the_trainer_with_every_argument_intact(world):
    args = ["--config.model.hidden=512", "--note", 'two words "quoted" $HOME `x`']
    world.script("run.sh", "--name", "exp1", "--no-data", "experiments/charlm.py:tpu", *args)
    world.wait_sessions(30)
    (train,) = _train_records(world)
    assert train["argv"] == [
        "train", "--config", "experiments/charlm.py:tpu",
        "--workdir", "gs://my-bucket/rnnlab/exp1", *args,
    ]  # fmt: skip
    assert train["cwd"] == str(world.home(0) / "rnnlab")
    assert train["unbuffered"] == "1" and train["data"] == str(world.home(0) / "rnnlab-data")
    # One log per worker, named after the session and the worker's host name, copied to the
    # workdir in the bucket when the run ends; the exit status left for tpu/launch.sh.
    log = world.home(0) / "rnnlab-logs" / f"rnnlab-exp1-{HOST0}.log"
    text = log.read_text()
    assert "start rnnlab-exp1" in text and "step 1 loss 2.5" in text and "exit 0" in text
    (copy,) = (world.gcs / "my-bucket/rnnlab/exp1/logs").iterdir()
    assert copy.name.startswith(f"{HOST0}-") and copy.read_text() == text
    assert (world.home(0) / "rnnlab-logs" / "rnnlab-exp1.status").read_text() == "0\n"
    cp = ["gcloud", "storage", "cp", str(log), f"gs://my-bucket/rnnlab/exp1/logs/{copy.name}"]
    assert cp in world.calls("gcloud")
    # What ran is exactly what a dry run prints.
    (ssh,) = [c for c in world.calls("gcloud") if c[4] == "ssh"]
    Path(world.env["FAKE_CALLS"]).unlink()
    (printed,) = world.dry(
        "run.sh", "--name", "exp1", "--no-data", "experiments/charlm.py:tpu", *args
    )
    assert printed == ssh


def test_logs_are_copied_while_the_run_goes_on(world):
    trainer = world.home(0) / "rnnlab-venv" / "bin" / "rnnlab"
    trainer.write_text("#!/bin/sh\necho step 1; sleep 3; echo step 2\n")
    world.script("run.sh", "--name", "slow", "--no-data", "x.py", LOG_COPY_EVERY="1")
    world.wait_sessions(30)
    (copy,) = (world.gcs / "my-bucket/rnnlab/slow/logs").iterdir()
    copies = [c for c in world.calls("gcloud") if c[1:3] == ["storage", "cp"]]
    assert len(copies) >= 2 and "step 2" in copy.read_text()


@pytest.fixture
def old_run(world):
    """A process standing in for a trainer already running in session rnnlab-exp1."""
    proc = subprocess.Popen(["sleep", "60"])
    (world.home(0) / ".fake-tmux.json").write_text(json.dumps({"rnnlab-exp1": proc.pid}))
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_stop_sends_sigterm_to_the_sessions_process_only(world, old_run):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        world.script("stop.sh", "exp1")
        assert old_run.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert ["tmux", "kill-session", "-t", "=rnnlab-exp1"] in world.calls("tmux")


def test_run_stops_the_previous_run_before_starting(world, old_run):
    world.script("run.sh", "--name", "exp1", "--no-data", "experiments/charlm.py:tpu")
    assert old_run.wait(timeout=10) == -signal.SIGTERM
    ops = [c[1] for c in world.calls("tmux")]
    assert ops.index("list-panes") < ops.index("new-session")


def test_run_refuses_to_start_beside_a_run_of_another_name(world):
    other = subprocess.Popen(["sleep", "60"])
    try:
        (world.home(0) / ".fake-tmux.json").write_text(json.dumps({"rnnlab-other": other.pid}))
        result = world.script("run.sh", "--no-data", "--name", "exp1", "x.py", check=False)
        assert result.returncode == 3
        assert "error: run rnnlab-other is going on t1v-n-fake-w-0" in result.stderr
        assert "tpu/stop.sh other first" in result.stderr
        assert other.poll() is None and not _train_records(world)
    finally:
        other.kill()
        other.wait()


def test_the_trainer_gets_the_sigterm_sent_to_its_session(world):
    trainer = world.home(0) / "rnnlab-venv" / "bin" / "rnnlab"
    trainer.write_text(
        "#!/bin/bash\ntrap 'echo saved checkpoint; exit 0' TERM\necho step 1\n"
        "while true; do sleep 0.1; done\n"
    )
    world.script("run.sh", "--name", "exp1", "--no-data", "x.py", LOG_COPY_EVERY="0")
    log = world.home(0) / "rnnlab-logs" / f"rnnlab-exp1-{HOST0}.log"
    for _ in range(100):
        if log.exists() and "step 1" in log.read_text():
            break
        subprocess.run(["sleep", "0.1"])
    world.script("stop.sh", "exp1")
    world.wait_sessions(30)
    assert "saved checkpoint" in log.read_text()
    assert (world.home(0) / "rnnlab-logs" / "rnnlab-exp1.status").read_text() == "0\n"


def test_logs_tail_and_follow_every_worker_or_one(world):
    (cmd,) = world.dry("logs.sh", "experiments/charlm.py:tpu", "-f", "-n", "5")
    assert "--worker=all" in cmd
    remote = flag(cmd, "command")
    assert remote.startswith('tail -n 5 -F "$HOME"/rnnlab-logs/rnnlab-charlm-tpu-"$(hostname)".log')
    (cmd,) = world.dry("logs.sh", "charlm-tpu", WORKER="0")
    assert "--worker=0" in cmd and "-F" not in flag(cmd, "command")


def test_logs_save_one_file_per_worker(world):
    log_dir = world.home(0) / "rnnlab-logs"
    log_dir.mkdir()
    (log_dir / f"rnnlab-exp1-{HOST0}.log").write_text("step 7 loss 1.0\n")
    out = world.tmp / "saved"
    world.script("logs.sh", "exp1", "--save", str(out))
    assert (out / "0.log").read_text() == "step 7 loss 1.0\n"
    result = world.script("logs.sh", "exp1", "-n", "1")
    assert result.stdout == f"[{HOST0}] step 7 loss 1.0\n"


def test_setup_syncs_then_installs_jax_tpu_and_the_project_on_all_workers(world):
    *sync, install = world.dry("setup.sh")
    assert [c[4] for c in sync[1:]] == ["scp", "ssh"]
    assert all("--worker=all" in c for c in sync[1:] + [install])
    remote = flag(install, "command")
    assert "uv venv --seed --python 3.12" in remote
    assert "pip install --quiet 'jax[tpu]' -e \"$HOME\"/rnnlab'[train,gcs]'" in remote


def test_sync_copies_tracked_and_untracked_files_but_not_ignored_ones(world):
    repo = world.tmp / "repo"
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
    stale = world.home(0) / "rnnlab" / "stale.py"
    stale.write_text("")
    data = world.home(0) / "rnnlab-data" / "tfds" / "prepared.txt"
    data.parent.mkdir(parents=True)
    data.write_text("kept")
    world.script("sync.sh", tpu_dir=repo / "tpu")
    synced = world.home(0) / "rnnlab"
    assert (synced / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert (synced / "new file.py").exists() and (synced / "tpu" / "run.sh").exists()
    assert not (synced / ".venv").exists() and not (synced / "gone.py").exists()
    assert not stale.exists() and not (world.home(0) / "rnnlab-src.tar.gz").exists()
    assert data.read_text() == "kept"  # the data folder is outside the synced one
    scp = [c for c in world.calls("gcloud") if c[4] == "scp"]
    assert len(scp) == 1 and "--worker=all" in scp[0]


def test_status_and_ssh(world):
    qr, describe, workers = world.dry("status.sh")
    assert qr[3:6] == ["queued-resources", "describe", "test-tpu-qr"]
    assert describe[4:6] == ["describe", "test-tpu"] and "--worker=all" in workers
    (cmd,) = world.dry("ssh.sh", "df -h ~", WORKER="0")
    assert flag(cmd, "command") == "df -h ~" and "--worker=0" in cmd


def test_launch_prints_one_round(world):
    cmds = world.dry("launch.sh", "experiments/faults.py", SPOT="1")
    verbs = [c[3:5] if c[0] == "gcloud" else c[:1] for c in cmds]
    assert verbs[:2] == [["queued-resources", "create"], ["queued-resources", "describe"]]
    assert "--spot" in cmds[0]
    assert verbs[-1] == ["queued-resources", "delete"] and cmds[-1][-2:] == ["--force", "--quiet"]
    status = cmds[-2]
    assert "--worker=0" in status and "rnnlab-faults.status" in flag(status, "command")


def test_every_script_has_accurate_help(world):
    for script in sorted(TPU.glob("*.sh")):
        if script.name == "lib.sh":
            continue
        out = world.script(script.name, "--help").stdout
        # The whole comment block at the top, and nothing else.
        header = script.read_text().splitlines()[1:]
        block = header[: next(i for i, line in enumerate(header) if not line.startswith("#"))]
        assert out.splitlines() == block, script.name
        assert script.name in out or "tpu/" in out, script.name
        # The usage lines name the script itself.
        if script.name != "worker.sh":
            assert f"tpu/{script.name}" in out, script.name


def test_scripts_refuse_missing_arguments(world):
    assert "EXPERIMENT is missing" in world.script("run.sh", check=False).stderr
    assert "EXPERIMENT is missing" in world.script("launch.sh", check=False).stderr
    assert "EXPERIMENT is missing" in world.script("data.sh", check=False).stderr
    assert "exactly one RUN" in world.script("stop.sh", check=False).stderr
    assert "RUN is missing" in world.script("logs.sh", check=False).stderr


def test_tensorboard_extra_installs_tensorboard_without_tensorflow():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(req.startswith("tensorboard>=") for req in extras["tensorboard"])
    assert not any(req.startswith("tensorflow") for req in extras["tensorboard"])
    doc = (ROOT / "docs" / "tpu.md").read_text()
    assert "pip install -e '.[tensorboard,gcs]'" in doc
    assert "tensorboard --logdir gs://MY_BUCKET/rnnlab" in doc


def test_a_run_that_does_not_compile_books_no_slice(world):
    args = ["experiments/charlm.py:tpu", "--config.optim.lr=3e-3", "--restart"]
    for script in ("run.sh", "launch.sh"):
        result = world.script(script, "--name", "exp1", *args, check=False, FAKE_COMPILE_STATUS="2")
        assert result.returncode == 2
        assert "does not compile or fit on v4-32" in result.stderr
    assert world.calls() == []  # no gcloud: nothing created, nothing used
    # Compiled for the slice's accelerator type with the run's config overrides only.
    want = ["compile", "--config", "experiments/charlm.py:tpu", "--topology", "v4-32"]
    assert world.compiles() == [[*want, "--config.optim.lr=3e-3"]] * 2


def test_compile_comes_first_and_no_compile_skips_it(world):
    world.dry("run.sh", "--no-data", "x.py")
    world.dry("launch.sh", "x.py")  # compiles once; its rounds' run.sh do not compile again
    assert len(world.compiles()) == 2
    world.dry("run.sh", "--no-compile", "--no-data", "x.py")
    world.dry("launch.sh", "--no-compile", "x.py")
    assert len(world.compiles()) == 2
    result = world.script("run.sh", "x.py", check=False, RNNLAB_COMPILE="/nonexistent/rnnlab")
    assert result.returncode == 2 and "make tpu-venv" in result.stderr
