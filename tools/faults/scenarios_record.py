"""Scenarios of the workdir as a record: two runs on one workdir, a refused resume, total
corruption, a late kill, divergence and Ctrl-C.

Each compares what the workdir holds after the fault with an independent reference: the
uninterrupted run (bit for bit), or the workdir's own files from before the command.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import socket
from pathlib import Path

from tools.faults import workdir as wd_lib
from tools.faults.process import TrainProcess, committed_steps, run_to_end, train_command
from tools.faults.report import Result
from tools.faults.scenarios import STEPS, Suite

_ERROR = re.compile(r"^rnnlab: (?:config )?error: .*$", re.M)


def _errors(output: str) -> list[str]:
    return _ERROR.findall(output)


def snapshot(workdir: Path) -> dict[str, bytes]:
    """The workdir's files outside checkpoints and TensorBoard (what a refused command must
    leave as it was)."""
    out = {}
    for p in sorted(Path(workdir).rglob("*")):
        rel = p.relative_to(workdir)
        if p.is_file() and rel.parts[0] not in ("checkpoints", "tensorboard"):
            out[str(rel)] = p.read_bytes()
    return out


def two_runs(suite: Suite) -> Result:
    """A second ``rnnlab train`` on a workdir in use, started while the first trains and
    started at the same moment: it must be refused in one line naming the other run's host
    and pid, and the run that owns the workdir must end like the reference, its metric log
    unmixed."""
    res = Result("two runs, one workdir (lock)")
    host = socket.gethostname()
    for together in (False, True):
        workdir = suite.fresh(f"lock{int(together)}")
        first = TrainProcess(suite.root, workdir)
        if not together and not suite.wait_started(first, res, "lock"):
            continue
        if not together:
            # The 40 steps can end before a second process has even imported jax, and a
            # finished run's lock is free: the first waits, stopped (alive, lock held),
            # until the second has tried, so that the second meets the lock every time.
            first.proc.send_signal(signal.SIGSTOP)
        # Started together, either may win: both train the reference's config.
        second = TrainProcess(suite.root, workdir, [] if together else ["optim.lr=0.05"])
        if together:
            a, b = first.finish(), second.finish()
        else:
            b = second.finish()
            first.proc.send_signal(signal.SIGCONT)
            a = first.finish()
        outs = {first.proc.pid: a, second.proc.pid: b}
        refused = [pid for pid, o in outs.items() if o.returncode == 1]
        owner = [pid for pid, o in outs.items() if o.returncode == 0]
        bad = []
        if len(refused) != 1 or len(owner) != 1:
            bad.append(f"exit codes {a.returncode}, {b.returncode}")
            res.add(False, lost=True, note=f"{bad} {a.output[-300:]} {b.output[-300:]}")
            continue
        lines = _errors(outs[refused[0]].output)
        message = len(lines) == 1 and f"pid {owner[0]} on host {host}" in lines[0]
        message = message and "Traceback" not in outs[refused[0]].output
        bad += suite.problems(workdir)  # the owner's state and log against the reference
        lrs = {r.get("lr") for r in wd_lib.read_metrics(workdir) if r["split"] == "train"}
        if len(lrs) != 1:
            bad.append(f"metric log mixes learning rates {sorted(lrs)}")
        what = "started together" if together else "second started during training"
        res.add(not bad, lost=bool(bad), message=message, note=f"{what}: {lines} {bad}")
    return res


def refused_resume(suite: Suite, base: Path) -> Result:
    """A resume with another model is refused (exit 2) and leaves config.json and every
    other record byte-identical; the run then resumes with its own config and ends like the
    reference. A finished run asked for another learning rate reports its result and keeps
    its files."""
    res = Result("refused resume")
    workdir = suite.fresh("refused")
    shutil.copytree(base, workdir)
    before = snapshot(workdir)
    out = run_to_end(suite.root, workdir, ["model.hidden_features=32"])
    lines = _errors(out.output)
    kept = snapshot(workdir) == before
    final = run_to_end(suite.root, workdir)
    bad = [final.output[-600:]] if final.returncode else suite.problems(workdir)
    ok = out.returncode == 2 and kept and not bad
    message = len(lines) == 1 and "another model" in lines[0]
    res.add(ok, lost=not kept or bool(bad), message=message, note=f"{lines} kept {kept} {bad}")

    finished = suite.fresh("refused_finished")
    shutil.copytree(suite.reference().workdir, finished)
    before = snapshot(finished)
    out = run_to_end(suite.root, finished, ["optim.lr=0.05"])
    kept = snapshot(finished) == before
    told = "not applied: optim.lr 0.01 -> 0.05" in out.output
    res.add(out.returncode == 0 and kept, lost=not kept, message=told, note=out.output[-400:])
    return res


def total_corruption(suite: Suite, base: Path) -> Result:
    """Every checkpoint damaged: the rerun stops (exit 1), and so does the next one, with
    the workdir unchanged, until ``--restart``; the restarted run ends bit-identical to the
    reference, the damaged checkpoints still in corrupt_checkpoints/ and the old metric log
    in previous/."""
    res = Result("total corruption, no silent restart")
    workdir = suite.fresh("allcorrupt")
    shutil.copytree(base, workdir)
    old_log = (workdir / "metrics.jsonl").read_bytes()
    for s in committed_steps(workdir):
        wd_lib.flip_bytes(workdir, s)
    first = run_to_end(suite.root, workdir)
    corrupt = sorted(p.name for p in (workdir / "corrupt_checkpoints").iterdir())
    before = snapshot(workdir)
    second = run_to_end(suite.root, workdir)
    refused = second.returncode == 1 and snapshot(workdir) == before
    refused = refused and not committed_steps(workdir)
    cmd = train_command(workdir) + ["--restart"]
    third = TrainProcess(suite.root, workdir, command=cmd).finish()
    bad = [third.output[-600:]] if third.returncode else suite.problems(workdir)
    kept = sorted(p.name for p in (workdir / "corrupt_checkpoints").iterdir()) == corrupt
    archived = [p / "metrics.jsonl" for p in (workdir / "previous").iterdir()]
    kept = kept and any(p.read_bytes() == old_log for p in archived if p.exists())
    lines = _errors(first.output) + _errors(second.output)
    message = len(lines) == 2 and "reads back intact" in lines[0] and "--restart" in lines[1]
    ok = first.returncode == 1 and refused and kept and not bad
    res.add(ok, lost=not (refused and kept), message=message, note=f"{lines} {bad}")
    return res


def late_kill(suite: Suite) -> Result:
    """SIGKILL once the last checkpoint is committed and before summary.json is written
    (the figures are drawn in between). The rerun must rebuild the summary from that
    checkpoint: the same final validation metrics as the reference's summary."""
    res = Result("late kill (before summary.json)")
    workdir = suite.fresh("latekill")
    p = TrainProcess(suite.root, workdir)
    if not suite.wait_started(p, res, "late kill"):
        return res
    p.wait_for(lambda: STEPS in committed_steps(workdir), 600, poll=0.001)
    p.send(signal.SIGKILL)
    p.finish()
    summary = workdir / "summary.json"
    if summary.exists():  # the figures were drawn before the poll saw the checkpoint
        res.notes.append("info: the kill came after summary.json; removed it")
        summary.unlink()
    out = run_to_end(suite.root, workdir)
    want = json.loads((suite.reference().workdir / "summary.json").read_text())
    bad = [out.output[-600:]] if out.returncode else []
    if not bad:
        got = json.loads(summary.read_text())
        a, b = got["final"]["validation"], want["final"]["validation"]
        same = set(a) == set(b) and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)
        if not same or got["steps"] != STEPS or got["stop_reason"] != "completed":
            bad.append(f"summary {got['final']} vs {want['final']}")
        bad += suite.problems(workdir)
    message = "no evaluation" not in out.output and "; rebuilt from it" in out.output
    res.add(not bad, lost=bool(bad), message=message, note=f"{bad} {out.output[-300:]}")
    return res


def divergence(suite: Suite) -> Result:
    """Adam at lr 1000 without clipping: the run must stop with exit 1 and one line saying
    the loss diverged, naming no checkpoint that does not exist, and write no summary."""
    res = Result("divergence (lr 1000, no clipping)")
    workdir = suite.fresh("diverge")
    out = run_to_end(suite.root, workdir, ["optim.lr=1000", "optim.clip_norm=0"])
    lines = _errors(out.output)
    named = {int(s) for line in lines for s in re.findall(r"checkpoint (\d+)", line)}
    honest = named <= set(committed_steps(workdir))
    ok = out.returncode == 1 and honest and not (workdir / "summary.json").exists()
    message = len(lines) == 1 and "diverged" in lines[0] and "Traceback" not in out.output
    res.add(ok, message=message, note=f"rc {out.returncode} {lines} {committed_steps(workdir)}")
    return res


_INTERRUPTED = re.compile(r"interrupted at step (\d+): checkpoint saved")


def interrupt(suite: Suite) -> Result:
    """Ctrl-C (SIGINT) after step 15 is logged: a checkpoint of the current step, exit 130,
    no traceback; the rerun resumes there and ends like the reference."""
    res = Result("Ctrl-C (SIGINT)")
    workdir = suite.fresh("sigint")
    p = TrainProcess(suite.root, workdir)
    if not suite.wait_started(p, res, "SIGINT"):
        return res
    p.wait_for(lambda: (p.last_step() or 0) >= 15, 600, poll=0.005)
    p.send(signal.SIGINT)
    out = p.finish()
    m = _INTERRUPTED.search(out.output)
    saved = int(m.group(1)) if m else None
    clean = out.returncode == 130 and "Traceback" not in out.output
    final = run_to_end(suite.root, workdir)
    bad = [final.output[-600:]] if final.returncode else suite.problems(workdir)
    if saved is None or final.resumed_from != saved or committed_steps(workdir)[-1:] != (STEPS,):
        bad.append(f"saved {saved}, resumed from {final.resumed_from}")
    note = f"{bad} {out.output[-300:]}"
    res.add(clean and not bad, lost=bool(bad), message=m is not None, note=note)
    return res
