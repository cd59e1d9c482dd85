"""The fault-injection suite in its short (CI) form: real ``rnnlab train`` subprocesses on
experiments/faults.py killed during a checkpoint write and after the last checkpoint,
preempted, interrupted with Ctrl-C, resumed from a damaged checkpoint, from all-damaged
checkpoints (refused until --restart) and with another model (refused, files untouched),
run twice on one workdir (the lock), fed NaN batches (stop, and restore with a lower
learning rate), driven to divergence and, where user namespaces allow a tmpfs, run out of
disk; every survivor is compared bit for bit with one uninterrupted reference run.
``make faults`` runs the full form (docs/reliability.md)."""

import os
from pathlib import Path

import pytest

from tools.faults import failures, run_suite, table
from tools.faults.process import REPO


@pytest.mark.slow
def test_short_fault_suite_survives_every_fault_and_loses_nothing(tmp_path):
    if not (REPO / "data" / "austen").exists() and "RNNLAB_DATA_DIR" not in os.environ:
        pytest.fail("the Austen corpus is missing: run `make data` first")
    results = run_suite(Path(tmp_path) / "faults", short=True, log=lambda s: None)
    print(table(results))
    assert not failures(results), failures(results) + "\n" + table(results)
    names = {r.scenario for r in results}
    for expected in (
        "hard kill (SIGKILL)",
        "preemption (SIGTERM)",
        "corrupt/truncated checkpoint",
        "refused resume",
        "total corruption, no silent restart",
        "two runs, one workdir (lock)",
        "late kill (before summary.json)",
        "Ctrl-C (SIGINT)",
        "divergence (lr 1000, no clipping)",
        "non-finite: stop",
        "non-finite: restore + lower lr",
        "bad input (library)",
        "bad configuration",
        "untrusted files (loaders)",
        "someone else's workdir, readers, inputs",
    ):
        assert expected in names, expected
    assert sum(r.data_lost for r in results) == 0
