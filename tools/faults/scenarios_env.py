"""Scenarios of the run's surroundings: a full disk, a read-only workdir, a bad command line,
another dataset, planted pickles, plus the in-process cases of :mod:`tools.faults.cases`.

The disk scenarios mount a small ``tmpfs`` inside a user and mount namespace
(``unshare -rm``), so they need neither root nor a spare disk; where namespaces are not
allowed they are reported as not run.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.faults import cases
from tools.faults import workdir as wd_lib
from tools.faults.process import TrainProcess, committed_steps, run_to_end, train_command
from tools.faults.report import Result
from tools.faults.scenarios import Suite


def namespaces_available() -> bool:
    """Whether ``unshare -rm`` can mount a tmpfs here."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        probe = f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(d)}"
        try:
            done = subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True)
        except OSError:
            return False
        return done.returncode == 0


def _error_line(output: str) -> str:
    """The CLI's ``rnnlab: error: ...`` line, found anywhere in a line: a background thread
    (orbax, the event writer) may have written to stderr without a newline just before it.
    Without one, the output's tail."""
    found = re.search(r"rnnlab: error: [^\n]*", output)
    return found.group(0) if found else output[-600:]


def _in_tmpfs(suite: Suite, mnt: Path, size: str, before: str, run: str, after: str):
    mnt.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(mnt))} && {before}"
        f"{run}; rc=$?; {after}; exit $rc"
    )
    cmd = ["unshare", "-rm", "sh", "-c", script]
    return TrainProcess(suite.root, mnt, command=cmd).finish()


def disk_full(suite: Suite, *, resume: bool = True, size: str = "420k") -> Result:
    """The workdir on a tmpfs of ``size``: the first checkpoints fit, a later one does not.
    The run must stop with an error naming the full disk and the intact checkpoint; the
    checkpoints written before must be bit-identical to the reference's; copied to a roomy
    disk the run must resume and end like the reference."""
    res = Result("disk full (ENOSPC)")
    mnt, dest = suite.root / "tmpfs_full", suite.fresh("diskfull")
    run = shlex.join(train_command(mnt / "wd"))
    out = _in_tmpfs(suite, mnt, size, "", run, f"cp -a {shlex.quote(str(mnt / 'wd'))} {dest}")
    steps = committed_steps(dest)
    text = _error_line(out.output)
    message = bool(steps) and bool(
        re.search(rf"No space left on device.*checkpoint {steps[-1]} is intact", text)
    )
    bad = [] if steps else ["no checkpoint survived"]
    # A failed atomic write removes its temporary file (.config.json.<hex>.tmp, plots).
    bad += [f"left behind: {p.relative_to(dest)}" for p in dest.rglob(".*.tmp")]
    message = message and str(mnt / "wd") in text
    for s in steps:
        bad += suite.problems(dest, step=s, log=False)
    if resume and steps:
        final = run_to_end(suite.root, dest)
        bad += [final.output[-600:]] if final.returncode else suite.problems(dest)
        if final.resumed_from != steps[-1]:
            bad.append(f"resumed from {final.resumed_from}, not {steps[-1]}")
    res.add(out.returncode == 1 and not bad, lost=bool(bad), message=message, note=f"{text} {bad}")
    res.notes.append(f"info: {text}")
    return res


def disk_full_at_start(suite: Suite) -> Result:
    """The workdir on a 12 KiB tmpfs: the first file written after the lock does not fit.
    The one error line must name that file and the full disk, and no temporary file may
    stay behind (it used to say only ``[Errno 28] No space left on device`` and leave
    ``.config.json.<hex>.tmp``)."""
    res = Result("disk full at start-up (ENOSPC)")
    mnt, dest = suite.root / "tmpfs_tiny", suite.fresh("diskfull_start")
    wd = mnt / "wd"
    run = shlex.join(train_command(wd))
    out = _in_tmpfs(suite, mnt, "12k", "", run, f"cp -a {shlex.quote(str(wd))} {dest}")
    text = _error_line(out.output)
    message = bool(re.search(rf"No space left on device: '{re.escape(str(wd))}/\S+'", text))
    left = [str(p.relative_to(dest)) for p in dest.rglob(".*.tmp")] if dest.exists() else []
    res.add(out.returncode == 1 and not left, message=message, note=f"{text}; left: {left}")
    return res


def read_only(suite: Suite, base: Path) -> Result:
    """An unfinished workdir remounted read-only: the run must refuse to start with an error
    naming the read-only file system, and every checkpoint must still be there."""
    res = Result("read-only workdir")
    mnt = suite.root / "tmpfs_ro"
    wd = mnt / "wd"
    copy = f"cp -a {shlex.quote(str(base))} {shlex.quote(str(wd))} && "
    remount = f"mount -o remount,ro {shlex.quote(str(mnt))} && "
    listing = suite.fresh("readonly_after")
    listing.mkdir()
    after = f"ls {shlex.quote(str(wd / 'checkpoints'))} > {shlex.quote(str(listing / 'ls'))}"
    out = _in_tmpfs(suite, mnt, "4m", copy + remount, shlex.join(train_command(wd)), after)
    text = _error_line(out.output)
    left = sorted(int(n) for n in (listing / "ls").read_text().split() if n.isdigit())
    kept = left == list(committed_steps(base))
    message = "Read-only file system" in text and str(wd) in text
    res.add(out.returncode == 1 and kept, lost=not kept, message=message, note=f"{text}; {left}")
    return res


def bad_command_line(suite: Suite) -> Result:
    """``rnnlab train`` with a misspelled key, a wrong type and a batch the devices cannot
    split: exit status 2 before any training, the key named."""
    res = Result("bad configuration (command line)")
    cases_ = [
        (["train.stepz=3"], {}, r"config key 'train\.stepz': no such key; did you mean"),
        (["train.steps=ten"], {}, r"config key 'train\.steps'.*'ten'"),
        (
            [],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"},
            r"config key 'train\.batch_size': global batch 4 is not divisible by the 3",
        ),
    ]
    for overrides, env, pattern in cases_:
        workdir = suite.fresh("badconfig")
        out = run_to_end(suite.root, workdir, overrides, env=env)
        started = "starting at step" in out.output or workdir.joinpath("checkpoints").exists()
        ok = out.returncode == 2 and not started
        res.add(ok, message=bool(re.search(pattern, out.output)), note=out.output[-400:])
    return res


def other_dataset(suite: Suite, base: Path) -> Result:
    """Resuming an austen run on another corpus (another vocabulary): refused as bad input
    (exit 2) with a message naming the vocabulary, the checkpoints left where they are."""
    res = Result("vocabulary mismatch on resume")
    workdir = suite.fresh("othervocab")
    shutil.copytree(base, workdir)
    corpus = suite.fresh("othervocab_text")
    corpus.mkdir()
    words = "zebra quartz jukebox 0123456789 vexing {fjord} nymph [waltz] "
    (corpus / "a.txt").write_text(words * 600)
    over = [
        "data.name=text_dir",
        f"data.path={corpus}",
        f"data.tfds_data_dir={suite.root / 'tfds_text'}",
    ]
    out = run_to_end(suite.root, workdir, over)
    message = bool(re.search(r"trained on another dataset.*vocab", out.output))
    kept = committed_steps(workdir) == committed_steps(base)
    kept = kept and not (workdir / "corrupt_checkpoints").exists()
    res.add(out.returncode == 2 and kept, lost=not kept, message=message, note=out.output[-500:])
    return res


def planted_pickles(suite: Suite, base: Path) -> Result:
    """Pickles that would create a marker file, planted in and around the checkpoints of an
    unfinished run: the rerun must not run them and must end like the reference."""
    res = Result("untrusted files (pickles)")
    workdir = suite.fresh("pickles")
    shutil.copytree(base, workdir)
    marker = suite.root / "pickles_marker"
    marker.unlink(missing_ok=True)
    wd_lib.plant_pickles(workdir, marker)
    out = run_to_end(suite.root, workdir)
    bad = [out.output[-600:]] if out.returncode else suite.problems(workdir)
    res.add(not marker.exists() and not bad, lost=bool(bad), note=f"marker {marker.exists()} {bad}")
    return res


# -- in-process cases -----------------------------------------------------------------------


def run_cases(name: str, group: list[cases.Case]) -> Result:
    """Each case must raise its error with a message matching its pattern."""
    res = Result(name)
    for case in group:
        with tempfile.TemporaryDirectory() as d:
            try:
                case.call(Path(d))
            except case.error as e:
                ok = re.search(case.pattern, str(e)) is not None
                res.add(True, message=ok, note=f"{case.name}: message {str(e)[:200]!r}")
            except Exception as e:  # the wrong kind of error is a failure, not a crash
                res.add(False, note=f"{case.name}: {type(e).__name__}: {str(e)[:200]}")
            else:
                res.add(False, note=f"{case.name}: no error")
    return res


def untrusted_in_process() -> Result:
    """The loaders' sources use no pickle, and planted pickles are never run."""
    res = Result("untrusted files (loaders)")
    package = Path(__file__).resolve().parents[2] / "rnnlab"
    hits = cases.unsafe_loader_calls(package)
    res.add(not hits, note=f"unsafe loader calls: {hits}")
    for replace in (False, True):
        with tempfile.TemporaryDirectory() as d:
            safe, outcome = cases.malicious_checkpoint(Path(d), replace=replace)
        res.add(safe, note=outcome)
    return res
