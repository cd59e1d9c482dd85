"""The stand-in programs of the local Cloud TPU slice (tests/tpu_world.py): ``gcloud``,
``tmux``, ``hostname``, the workers' ``python`` and ``rnnlab`` (fake or the real command line)
and ``rnnlab compile``, as the text of the scripts :class:`tpu_world.World` writes, and the
user's settings file."""

import inspect


def alive(pid):
    """Whether process ``pid`` runs (a zombie does not); the stand-ins carry its source."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


ALIVE = inspect.getsource(alive)

FAKE_GCLOUD = (
    r"""
import json, os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

argv = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(["gcloud", *argv]) + "\n")
args = argv[1:] if argv[:1] == ["alpha"] else argv
root = Path(os.environ["FAKE_ROOT"])
gcs = Path(os.environ["FAKE_GCS"])
state_path, history_path = root / "slice.json", root / "history.json"
workers = int(os.environ.get("FAKE_WORKERS", "1"))
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
flags = {a[2:] for a in args if a.startswith("--") and "=" not in a}


def load(path, default=None):
    return json.loads(path.read_text()) if path.exists() else default


def save(path, value):
    # Atomic, as gcloud's own state is: a describe racing a preemption must never read a
    # half-written file (it would see no slice at all).
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def homes():
    return [root / "workers" / f"w{i}" for i in range(workers)]


"""
    + ALIVE
    + r"""

def sessions(home):
    return list(load(home / ".fake-tmux.json", {}).values())


def stop_machines(sig):
    # What a VM's shutdown does: every process gets the signal; wait for them to exit.
    pids = [pid for home in homes() for pid in sessions(home) if pid and alive(pid)]
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
    deadline = time.time() + 120
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)


def remove_machines():
    stop_machines(signal.SIGKILL)
    shutil.rmtree(root / "workers", ignore_errors=True)


def local(url):
    return gcs / url[len("gs://"):] if url.startswith("gs://") else Path(url)


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


def preempt(state):
    # A spot preemption: every process gets SIGTERM and some time to exit, then the VMs and
    # their disks are gone and the queued resource is SUSPENDED.
    stop_machines(signal.SIGTERM)
    remove_machines()
    state["state"] = "SUSPENDED" if state["kind"] == "qr" else "PREEMPTED"
    save(state_path, state)
    history = load(history_path, {})
    history["preempted"] = history.get("preempted", 0) + 1
    save(history_path, history)


if args[:2] == ["fake", "preempt"]:  # not a gcloud command: the tests' preemption
    preempt(load(state_path))
    sys.exit(0)
group, verb = (args + ["", ""])[2:4]
if group in ("queued-resources", "tpu-vm") and verb == "create":
    if state_path.exists():
        fail(f"ERROR: (gcloud) {args[4]} already exists")
    image = Path(os.environ["FAKE_IMAGE"])
    for home in homes():
        shutil.copytree(image, home, symlinks=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kind = "qr" if group == "queued-resources" else "vm"
    save(state_path, {"kind": kind, "state": "ACTIVE", "port": port})
    history = load(history_path, {})
    history["creates"] = history.get("creates", 0) + 1
    save(history_path, history)
elif group in ("queued-resources", "tpu-vm") and verb == "describe":
    state = load(state_path)
    if state is None:
        fail("ERROR: (gcloud) NOT_FOUND: resource not found")
    if group == "tpu-vm" and state["state"] == "ACTIVE":
        print("READY" if "format" in opts else json.dumps({"state": "READY"}))
    else:
        print(state["state"] if "format" in opts else json.dumps(state))
elif group in ("queued-resources", "tpu-vm") and verb == "delete":
    if not state_path.exists():
        fail("ERROR: (gcloud) NOT_FOUND: resource not found")
    remove_machines()
    state_path.unlink()
elif group == "tpu-vm" and verb == "ssh":
    state = load(state_path)
    if state is None or state["state"] != "ACTIVE":
        fail("ssh: connect to host: Connection refused", 255)
    which = range(workers) if opts["worker"] == "all" else [int(opts["worker"])]
    # A worker sees none of the caller's settings, except how JAX compiles (make test's
    # JAX_DISABLE_MOST_OPTIMIZATIONS, XLA_FLAGS and compilation cache): speed, not what a
    # worker finds.
    keep = ("JAX_DISABLE_MOST_OPTIMIZATIONS", "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_",
            "XLA_FLAGS")
    base = {k: v for k, v in os.environ.items() if k.startswith(keep) or
            not k.startswith(("RNNLAB_", "JAX_", "XLA_", "TFDS_DATA_DIR", "PYTHONPATH"))}
    procs = []
    for i in which:
        home = homes()[i]
        with open(root / f"commands-w{i}.jsonl", "a") as f:
            f.write(json.dumps(opts["command"]) + "\n")
        env = dict(base, HOME=str(home), FAKE_HOSTNAME=f"t1v-n-fake-w-{i}",
                   JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1",
                   RNNLAB_COORDINATOR=f"127.0.0.1:{state['port']}",
                   RNNLAB_NUM_PROCESSES=str(workers), RNNLAB_PROCESS_ID=str(i))
        procs.append((i, subprocess.Popen(["bash", "-c", opts["command"]], cwd=home, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)))
    code = 0
    for i, proc in procs:
        out, err = proc.communicate()
        if "output-directory" in opts:
            Path(opts["output-directory"], f"{i}.log").write_text(out)
        sys.stdout.write(out)
        sys.stderr.write(err)
        code = code or proc.returncode
    sys.exit(code)
elif group == "tpu-vm" and verb == "scp":
    state = load(state_path)
    if state is None or state["state"] != "ACTIVE":
        fail("scp: connect to host: Connection refused", 255)
    src, dest = args[4], args[5].split(":", 1)[1]
    which = range(workers) if opts["worker"] == "all" else [int(opts["worker"])]
    for i in which:
        shutil.copy(src, homes()[i] / dest)
elif args[0] == "storage" and args[1] == "cp":
    src, dest = local(args[2]), local(args[3])
    if not src.is_file():
        fail(f"ERROR: {args[2]} not found")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
elif args[0] == "storage" and args[1] == "rsync":
    src, dest = local(args[2]), local(args[3])
    if not src.is_dir():
        fail(f"ERROR: {args[2]} not found")
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(src)
            if not target.exists() or target.read_bytes() != path.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
elif args[0] == "storage" and args[1] == "cat":
    path = local(args[2])
    if not path.is_file():
        fail(f"ERROR: (gcloud) {args[2]} not found")
    sys.stdout.write(path.read_text())
elif args[0] == "storage" and args[1] == "ls":
    path = local(args[2])
    if not path.exists():
        fail(f"ERROR: (gcloud) One or more URLs matched no objects: {args[2]}")
    print(args[2])
"""
)

FAKE_TMUX = (
    r"""
import json, os, signal, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(["tmux", *args]) + "\n")
state_file = Path(os.environ["HOME"]) / ".fake-tmux.json"
state = json.loads(state_file.read_text()) if state_file.exists() else {}


"""
    + ALIVE
    + r"""

def target():
    name = args[args.index("-t") + 1]
    assert name.startswith("="), "sessions must be addressed by exact name"
    return name[1:]


if args[0] == "has-session":
    sys.exit(0 if target() in state and alive(state[target()]) else 1)
if args[0] == "list-panes":
    print(state[target()])
elif args[0] == "list-sessions":
    print("\n".join(name for name, pid in state.items() if alive(pid)))
elif args[0] == "kill-session":
    pid = state.pop(target(), None)
    if pid and alive(pid):
        try:
            os.killpg(pid, signal.SIGHUP)
        except OSError:
            pass
elif args[0] == "new-session":
    name, command = args[args.index("-s") + 1], args[-1]
    proc = subprocess.Popen(["bash", "-c", command], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state[name] = proc.pid
state_file.write_text(json.dumps(state))
"""
)

FAKE_HOSTNAME = """#!/bin/sh
if [ -n "${FAKE_HOSTNAME:-}" ]; then echo "$FAKE_HOSTNAME"; else exec %s "$@"; fi
"""

# The workers' venv: pip does nothing (the machine image already holds the project), the
# device query at the end of tpu/setup.sh is answered without starting JAX (seconds of CPU
# per worker, and only meaningful on a TPU), and python runs the synced code.
FAKE_PYTHON = """#!/bin/bash
if [[ "${1:-} ${2:-}" == "-m pip" ]]; then echo "$*" >> "$HOME/pip-calls.txt"; exit 0; fi
if [[ "${1:-}" == -c && "${2:-}" == "import jax; print(jax.process_index()"* ]]; then
  echo "$RNNLAB_PROCESS_ID 1 cpu"; exit 0
fi
PYTHONPATH="$HOME/rnnlab" exec %s "$@"
"""

# The real command line, from the synced code, with the World's ``train_args`` after a
# train command's own (a stand-in's overrides, e.g. a batch a CPU can step), at the World's
# ``nice`` level. tensorboardX would import torch when it can (seconds per process); the
# runs do not need it.
REAL_TRAINER = """#!/bin/bash
PYTHONPATH="$HOME/rnnlab" exec nice -n %d %s -c '
import sys
sys.modules["torch"] = None
from rnnlab.cli import main
argv = sys.argv[1:]
sys.exit(main(argv + %s if argv[:1] == ["train"] else argv))' "$@"
"""

FAKE_TRAINER = r"""
import json, os, sys
with open(os.environ["FAKE_TRAIN"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                        "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
                        "data": os.environ.get("RNNLAB_DATA_DIR")}) + "\n")
print("step 1 loss 2.5")
"""

# Stands in for `rnnlab compile` on the machine that books the slice (the real one needs
# libtpu, which the main venv lacks; tests_tpu/ compiles for real): records its arguments,
# exits with FAKE_COMPILE_STATUS (default 0).
FAKE_COMPILE = """
import json, os, sys
with open(os.environ["FAKE_COMPILES"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_COMPILE_STATUS", "0")))
"""

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
