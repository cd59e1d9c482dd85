"""Training-run scenarios: hard kills, preemption, damaged checkpoints, non-finite updates.

Every scenario runs ``rnnlab train`` on ``experiments/faults.py`` as real subprocesses and
compares what survives with one uninterrupted reference run (kept with all its checkpoints),
bit for bit. Moments are drawn from a seeded ``random.Random``, so a suite run is repeatable
up to the operating system's scheduling.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import numpy as np

from tools.faults import workdir as wd_lib
from tools.faults.process import (
    Outcome,
    TrainProcess,
    committed_steps,
    run_to_end,
    writing,
)
from tools.faults.report import Result

STEPS, EVERY = 40, 5  # experiments/faults.py: train.steps, checkpoint_every (= log_every)


@dataclasses.dataclass
class Reference:
    workdir: Path
    state: dict[str, np.ndarray]
    log: list[tuple[int, float]]
    step_seconds: float


class Suite:
    """Shared state of one suite run: the root folder, the random moments, the reference.

    The reference run lives in ``shared`` (default: ``root``) with what it took per step
    (``reference.json``); suites run side by side on one ``shared`` folder train it once
    (a file lock), and each starts its compilation cache from the reference's."""

    def __init__(
        self,
        root: Path,
        *,
        seed: int = 0,
        log: Callable[[str], None] = print,
        shared: Path | None = None,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shared = self.root if shared is None else Path(shared)
        self.shared.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.log = log
        self._reference: Reference | None = None

    # -- the uninterrupted run -----------------------------------------------------------
    def reference(self) -> Reference:
        """Trains the reference once (every checkpoint kept) and reads it back."""
        if self._reference is None:
            workdir, meta = self.shared / "reference", self.shared / "reference.json"
            with filelock.FileLock(self.shared / "reference.lock"):
                if not meta.exists():
                    shutil.rmtree(workdir, ignore_errors=True)
                    out = run_to_end(self.shared, workdir, ["train.keep_checkpoints=100"])
                    if out.returncode != 0:
                        raise RuntimeError(f"the reference run failed:\n{out.output[-3000:]}")
                    step = max(out.step_seconds, 0.01)
                    meta.write_text(json.dumps({"seconds": out.seconds, "step_seconds": step}))
                    self.log(f"reference: {out.seconds:.1f} s, {step:.3f} s per step")
            if self.shared != self.root and (self.shared / "xla_cache").is_dir():
                # A copy, not the folder itself: jax writes its cache files in place.
                shutil.copytree(self.shared / "xla_cache", self.root / "xla_cache",
                                dirs_exist_ok=True)  # fmt: skip
            self._reference = Reference(
                workdir,
                wd_lib.final_state(workdir),
                wd_lib.train_log(workdir),
                json.loads(meta.read_text())["step_seconds"],
            )
        return self._reference

    def problems(self, workdir: Path, *, step: int | None = None, log: bool = True) -> list[str]:
        """How ``workdir`` differs from the reference: its checkpoint ``step`` (default: the
        final state) and its train log (each step once, the same losses)."""
        ref = self.reference()
        want = ref.state if step is None else wd_lib.final_state(ref.workdir, step)
        try:
            got = wd_lib.final_state(workdir, step)
        except FileNotFoundError as e:
            return [str(e)]
        out = []
        diff = wd_lib.differences(got, want)
        if diff:
            out.append(f"{len(diff)} arrays differ from the reference, e.g. {diff[:2]}")
        if log:
            got_log = wd_lib.train_log(workdir)
            if got_log != ref.log:
                out.append(f"train log differs: {got_log} vs {ref.log}")
        return out

    def fresh(self, name: str) -> Path:
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def wait_started(self, p: TrainProcess, res: Result, what: str) -> bool:
        if p.wait_for(p.started, 600, poll=0.02):
            return True
        out = p.finish()
        res.add(False, note=f"{what}: never started (rc {out.returncode}): {out.output[-500:]}")
        return False


# -- hard kill ------------------------------------------------------------------------------


def hard_kill(suite: Suite, modes: list[str]) -> Result:
    """SIGKILL at each of ``modes``, one after the other on the same workdir: at a random
    step ("random"), or once the first checkpoint write after a random step has begun
    ("write"). After each kill the next run must resume from the newest complete checkpoint
    (never a partial one); each workdir, run to the end, must equal the reference. A workdir
    with fewer than two steps left is finished and a new one started."""
    res = Result("hard kill (SIGKILL)")
    ref = suite.reference()
    lineage, partial_seen = 0, 0
    workdir = suite.fresh("kill0")
    pending: Outcome | None = None  # the last kill, checked by the run after it

    def check_resume(prev: Outcome, nxt: Outcome) -> None:
        committed = prev.committed_at_signal
        want = max(committed) if committed else None
        got = nxt.resumed_from
        ok = got == want and "corrupt" not in nxt.output
        where = "during a checkpoint write" if prev.during_write else "between writes"
        res.add(
            ok,
            lost=got != want,
            message=got == want,
            note=f"kill after step {prev.signal_step} ({where}): complete checkpoints "
            f"{committed}, the rerun resumed from {got}",
        )

    def finish() -> None:
        nonlocal pending
        final = run_to_end(suite.root, workdir)
        if pending is not None:
            check_resume(pending, final)
        pending = None
        bad = suite.problems(workdir) if final.returncode == 0 else [final.output[-800:]]
        if bad:  # the lineage's last kill is charged with it
            res.data_lost += 1
            res.survived = max(res.survived - 1, 0)
            res.notes.extend(bad)

    for mode in modes:
        resumed = max(committed_steps(workdir), default=0)
        if resumed >= STEPS - 2:
            finish()
            lineage += 1
            workdir, resumed = suite.fresh(f"kill{lineage}"), 0
        target = suite.rng.randint(resumed + 1, STEPS - 2)
        p = TrainProcess(suite.root, workdir)
        if not suite.wait_started(p, res, f"kill ({mode})"):
            continue
        logged = target - target % EVERY  # the last log line before the target step
        p.wait_for(lambda p=p, s=logged: (p.last_step() or 0) >= s, 600, poll=0.002)
        if mode == "write":
            p.wait_for(lambda w=workdir: writing(w), 600, poll=0.0005)
        else:
            time.sleep((target - logged + suite.rng.random()) * ref.step_seconds)
        p.send(signal.SIGKILL)
        out = p.finish()
        # What the kill left on disk is the truth (a rename may land as the signal goes).
        out.committed_at_signal = committed_steps(workdir)
        out.during_write = writing(workdir)
        partial_seen += int(out.during_write)
        if pending is not None:
            check_resume(pending, out)
        pending = out
        if out.returncode == 0:  # it finished before the kill point: nothing was killed
            res.notes.append(f"info: the {mode} kill after step {target} came too late")
            pending, lineage = None, lineage + 1
            workdir = suite.fresh(f"kill{lineage}")
    finish()
    res.notes.append(f"info: {partial_seen} of the kills left a partial checkpoint behind")
    suite.log(f"hard kill: {len(modes)} kills, {partial_seen} during a checkpoint write")
    return res


# -- preemption -----------------------------------------------------------------------------

_PREEMPTED = re.compile(r"preempted at step (\d+): checkpoint saved ([\d.]+) s after")


def preempt(suite: Suite, points: list[dict], *, keep: dict[int, Path] | None = None) -> Result:
    """SIGTERM at each point (``{"step": s, "grace": g, "overrides": [...]}``: after step
    ``s`` has been logged); the platform's SIGKILL follows after ``g`` seconds. The run must
    save the current step and exit in time, and the rerun must end like the reference.
    ``keep[i]``: where to copy point ``i``'s workdir before the rerun (for later scenarios)."""
    res = Result("preemption (SIGTERM)")
    for i, point in enumerate(points):
        workdir = suite.fresh(f"preempt{i}")
        grace = float(point.get("grace", 30))
        overrides = [f"train.preemption_grace_s={grace}"] + list(point.get("overrides", []))
        p = TrainProcess(suite.root, workdir, overrides)
        if not suite.wait_started(p, res, "preemption"):
            continue
        target = int(point["step"])
        p.wait_for(lambda p=p, s=target: (p.last_step() or 0) >= s, 600, poll=0.005)
        time.sleep(suite.rng.uniform(0.0, 0.2))
        p.send(signal.SIGTERM)
        # The platform's hard kill follows the grace period.
        exited = p.wait_for(lambda p=p: not p.alive(), max(grace, 1.0), poll=0.01)
        if not exited:
            p.send(signal.SIGKILL)
        out = p.finish()
        m = _PREEMPTED.search(out.output)
        saved = int(m.group(1)) if m else None
        took = float(m.group(2)) if m else None
        committed = committed_steps(workdir)
        ok = saved is not None and committed[-1:] == (saved,) and took <= max(grace, 1.0)
        note = (
            f"SIGTERM after step {out.signal_step} (grace {grace:g} s): "
            f"{m.group(0) if m else 'no preemption line'}, exit {out.returncode}, "
            f"checkpoints {committed}"
        )
        if keep and i in keep:
            shutil.copytree(workdir, keep[i], dirs_exist_ok=False)
        final = run_to_end(suite.root, workdir, point.get("overrides", []))
        bad = [final.output[-800:]] if final.returncode else suite.problems(workdir)
        if final.resumed_from != saved:
            bad.append(f"the rerun resumed from {final.resumed_from}, not {saved}")
        if point.get("expect_deferred") and "(deferred)" not in final.output:
            bad.append("the evaluation due at the preempted step was not run on resume")
        res.add(ok and not bad, lost=bool(bad), message=m is not None, note=f"{note}; {bad}")
    return res


# -- damaged checkpoints --------------------------------------------------------------------


def corrupt(suite: Suite, base: Path, variants: list[str]) -> Result:
    """Copies ``base`` (an unfinished run with three checkpoints), damages it per variant and
    reruns: the damage must be reported, the newest intact checkpoint used, the damaged one
    moved aside (not deleted) and the end equal the reference. Variant ``"all"`` damages
    every checkpoint: the run must stop with a message instead of starting over."""
    res = Result("corrupt/truncated checkpoint")
    steps = committed_steps(base)
    damage = {
        "flip": lambda w, s: wd_lib.flip_bytes(w, s),
        "truncate": lambda w, s: wd_lib.truncate_metadata(w, s),
        "remove": lambda w, s: wd_lib.remove_files(w, s),
    }
    for variant in variants:
        workdir = suite.fresh(f"corrupt_{variant}")
        shutil.copytree(base, workdir)
        if variant == "all":
            hit = list(steps)
            for s in hit:
                wd_lib.flip_bytes(workdir, s)
        elif variant == "two":
            hit = list(steps[-2:])
            wd_lib.truncate_metadata(workdir, hit[1])
            wd_lib.flip_bytes(workdir, hit[0])
        else:
            hit = [steps[-1]]
            damage[variant](workdir, hit[0])
        out = run_to_end(suite.root, workdir)
        reported = all(f"checkpoint {s} is corrupt" in out.output for s in hit)
        moved = sorted(p.name.split("-")[0] for p in (workdir / "corrupt_checkpoints").iterdir())
        kept = moved == sorted(str(s) for s in hit)
        if variant == "all":
            ok = out.returncode == 1 and "reads back intact" in out.output and kept
            res.add(ok, message=reported, note=f"all damaged: rc {out.returncode}, moved {moved}")
            continue
        intact = [s for s in steps if s not in hit]
        want = max(intact)
        bad = [out.output[-800:]] if out.returncode else suite.problems(workdir)
        if out.resumed_from != want:
            bad.append(f"resumed from {out.resumed_from}, not the intact {want}")
        res.add(
            kept and not bad,
            lost=bool(bad),
            message=reported,
            note=f"{variant} of {hit}: moved {moved}; {bad}",
        )
    return res


# -- non-finite updates ---------------------------------------------------------------------


def nonfinite_stop(suite: Suite) -> Result:
    """NaN batches at steps 12-14 with ``max_nonfinite=3`` and action ``stop``: the run must
    stop naming the steps, the loss and the largest gradient, count the skipped updates in
    its metrics, and keep checkpoint 10 bit-identical to the reference's."""
    res = Result("non-finite: stop")
    workdir = suite.fresh("nan_stop")
    out = run_to_end(suite.root, workdir, ["debug.nan_at_steps=(12, 13, 14)"])
    text = out.output
    message = bool(
        re.search(r"steps 12 to 14 .*loss was nan and the largest gradient nan in \w", text)
    )
    counted = [r for r in wd_lib.read_metrics(workdir) if r["split"] == "train" and r["step"] == 15]
    skipped = round(counted[0]["nonfinite"] * EVERY) if counted else None
    bad = suite.problems(workdir, step=10, log=False)
    ok = out.returncode == 1 and skipped == 3 and committed_steps(workdir)[-1:] == (10,)
    res.add(
        ok and not bad,
        lost=bool(bad),
        message=message,
        note=f"rc {out.returncode}, skipped counted {skipped}, {bad}, output {text[-600:]}",
    )
    return res


def nonfinite_restore(suite: Suite) -> Result:
    """The same NaN batches with action ``restore``: the run must go back to checkpoint 10,
    halve the learning rate, replay the steps (each logged once) and complete."""
    res = Result("non-finite: restore + lower lr")
    workdir = suite.fresh("nan_restore")
    over = [
        "debug.nan_at_steps=(12, 13, 14)",
        "train.nonfinite_action=restore",
        "train.keep_checkpoints=100",  # so that checkpoint 10 can be compared at the end
    ]
    out = run_to_end(suite.root, workdir, over)
    message = "restored checkpoint 10 with the learning rate scaled by 0.5" in out.output
    records = wd_lib.read_metrics(workdir)
    train = [r for r in records if r["split"] == "train"]
    steps = [r["step"] for r in train]
    lrs = {r["step"]: r["lr"] for r in train}
    events = [r for r in records if r["split"] == "nonfinite_restore"]
    problems = []
    if out.returncode != 0:
        problems.append(out.output[-800:])
    else:
        s = wd_lib.summary(workdir)
        if (s["nonfinite_restores"], s["lr_scale"], s["steps"]) != (1, 0.5, STEPS):
            problems.append(f"summary {s['nonfinite_restores']}, {s['lr_scale']}, {s['steps']}")
    if steps != list(range(EVERY, STEPS + 1, EVERY)):
        problems.append(f"train records at steps {steps}")
    lr, half = np.float32(0.01), np.float32(0.005)  # the logged float32 values
    if not (lrs.get(5) == lr and all(lrs.get(k) == half for k in range(15, STEPS + 1, 5))):
        problems.append(f"learning rates {lrs}")
    if [(e["first"], e["last"]) for e in events] != [(12, 14)]:
        problems.append(f"restore records {events}")
    if suite.problems(workdir, step=10, log=False):
        problems.append("checkpoint 10 differs from the reference's")
    res.add(not problems, message=message, note=f"{problems}")
    return res
