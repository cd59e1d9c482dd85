"""The fault-injection suite: training runs that are killed (also late, after the
last checkpoint), preempted, interrupted, fed NaNs or a learning rate that diverges, given
damaged checkpoints (all of them, too), a second run on the same workdir, a refused resume,
full or read-only disks, bad input and bad configuration.

Run it with ``make faults`` (``python -m tools.faults``) or, in its CI form, ``python -m
tools.faults --short`` (what ``tests/test_faults.py`` runs). Every training scenario starts
``rnnlab train`` on ``experiments/faults.py`` as a real subprocess and compares the outcome,
bit for bit, with one uninterrupted reference run. The result is a table: scenario, runs,
survived, data lost (must be 0), message checked. See docs/reliability.md.

::

    import tools.faults as faults
    results = faults.run_suite("/tmp/faults", short=True)
    print(faults.table(results))
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.faults import cases, cases_trust, scenarios, scenarios_env, scenarios_record
from tools.faults.report import Result, failures, table
from tools.faults.scenarios import Suite

__all__ = ["PARTS", "Result", "Suite", "failures", "run_suite", "table"]

# SIGKILL moments of the full form: while a checkpoint is written, and anywhere in the loop.
FULL_KILLS = ["write", "random", "write", "random", "write", "random"]
FULL_PREEMPTIONS = [
    {"step": 10},
    # Evaluating every step with no grace at all: the evaluation is deferred to the rerun.
    {"step": 20, "grace": 0, "overrides": ["train.eval_every=1"], "expect_deferred": True},
    {"step": 30, "grace": 5},
]


# The suite in three parts that share nothing but the reference run, so that they can run
# side by side (tests/test_faults.py runs one per test), of about the same length: the
# resumes of one preempted workdir and its damaged copies, the faults judged by what a
# workdir records, and what comes from outside the run (hard kills, non-finite updates,
# disks, bad input and configuration, untrusted files).
PARTS = ("resumes", "records", "environment")


def run_suite(
    root: str | Path,
    *,
    short: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = print,
    parts: Sequence[str] = PARTS,
    shared: str | Path | None = None,
) -> list[Result]:
    """Runs the scenarios of ``parts`` under ``root`` (created; emptied first) and returns
    the rows. The reference run is trained in ``shared`` (default: ``root``) unless a
    finished one is there already: suites run in parallel on one ``shared`` folder train it
    once, under a file lock (``Suite.reference``)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown fault-suite parts {unknown}; the parts are {list(PARTS)}")
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    suite = Suite(root, seed=seed, log=log, shared=shared)
    base = root / "unfinished"  # a preempted run's workdir, damaged by later scenarios
    results: list[Result] = []

    def timed(fn, *args, **kwargs) -> Result:
        t = time.monotonic()
        res = fn(*args, **kwargs)
        res.seconds = time.monotonic() - t
        log(f"{res.scenario}: {res.survived}/{res.runs} survived ({res.seconds:.0f} s)")
        results.append(res)
        return res

    t = time.monotonic()
    suite.reference()
    log(f"reference run: {time.monotonic() - t:.0f} s")
    if "resumes" in parts:
        points = [{"step": 15}] if short else FULL_PREEMPTIONS
        timed(scenarios.preempt, suite, points, keep={0: base})
        if base.exists():
            variants = ["flip"] if short else ["flip", "truncate", "remove", "two", "all"]
            timed(scenarios.corrupt, suite, base, variants)
            timed(scenarios_record.refused_resume, suite, base)
            timed(scenarios_record.total_corruption, suite, base)
        if not short and base.exists():
            if scenarios_env.namespaces_available():
                timed(scenarios_env.read_only, suite, base)
            timed(scenarios_env.other_dataset, suite, base)
            timed(scenarios_env.planted_pickles, suite, base)
    if "records" in parts:
        timed(scenarios_record.two_runs, suite)
        timed(scenarios_record.late_kill, suite)
        timed(scenarios_record.interrupt, suite)
        timed(scenarios_record.divergence, suite)
        if not short:
            timed(scenarios_record.divergence_restore, suite)
            timed(scenarios_env.bad_command_line, suite)
    if "environment" in parts:
        timed(scenarios.hard_kill, suite, ["write"] if short else FULL_KILLS)
        timed(scenarios.nonfinite_stop, suite)
        timed(scenarios.nonfinite_restore, suite)
        timed(scenarios_env.run_cases, "disk full (injected, in-process)", cases.DISK)
        if scenarios_env.namespaces_available():
            timed(scenarios_env.disk_full, suite, resume=not short)
            timed(scenarios_env.disk_full_at_start, suite)
        else:
            log("disk full / read-only: not run (no user namespaces for a tmpfs here)")
        timed(scenarios_env.run_cases, "bad input (library)", cases.BAD_INPUT)
        timed(scenarios_env.run_cases, "bad configuration", cases.BAD_CONFIG)
        timed(scenarios_env.run_cases, "someone else's workdir, readers, inputs", cases_trust.TRUST)
        timed(scenarios_env.untrusted_in_process)
    return results
