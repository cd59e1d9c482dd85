"""The fault-injection suite in its short (CI) form: real ``rnnlab train`` subprocesses on
experiments/faults.py killed during a checkpoint write and after the last checkpoint,
preempted, interrupted with Ctrl-C, resumed from a damaged checkpoint, from all-damaged
checkpoints (refused until --restart) and with another model (refused, files untouched),
run twice on one workdir (the lock), fed NaN batches (stop, and restore with a lower
learning rate), driven to divergence and, where user namespaces allow a tmpfs, run out of
disk; every survivor is compared bit for bit with one uninterrupted reference run.
``make faults`` runs the full form (docs/reliability.md).

The suite's three parts (``tools.faults.PARTS``) are independent tests, each its own xdist
group, so that ``make test`` runs them on three workers; they share one reference run,
trained by the first part to reach it under a file lock in the session's common temporary
folder (each xdist worker has its own session, and so its own ``tmp_path_factory``).
"""

import os
from pathlib import Path

import pytest

from tools.faults import PARTS, failures, run_suite, table
from tools.faults.process import REPO

# What each part must report; together, every scenario of the short form.
EXPECTED = {
    "resumes": (
        "preemption (SIGTERM)",
        "corrupt/truncated checkpoint",
        "refused resume",
        "total corruption, no silent restart",
    ),
    "records": (
        "two runs, one workdir (lock)",
        "late kill (before summary.json)",
        "Ctrl-C (SIGINT)",
        "divergence (lr 1000, no clipping)",
    ),
    "environment": (
        "hard kill (SIGKILL)",
        "non-finite: stop",
        "non-finite: restore + lower lr",
        "bad input (library)",
        "bad configuration",
        "untrusted files (loaders)",
        "someone else's workdir, readers, inputs",
    ),
}


def test_the_parts_are_the_suite():
    assert tuple(EXPECTED) == PARTS


@pytest.fixture(scope="session")
def shared_reference(tmp_path_factory):
    """A folder common to every xdist worker of this pytest run (the parent of each
    worker's base temporary folder), where the first part trains the reference run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root / "faults-reference"


@pytest.mark.slow(8)
@pytest.mark.parametrize(
    "part", [pytest.param(p, marks=pytest.mark.xdist_group(f"faults-{p}")) for p in PARTS]
)
def test_short_fault_suite_survives_every_fault_and_loses_nothing(tmp_path, shared_reference, part):
    if not (REPO / "data" / "austen").exists() and "RNNLAB_DATA_DIR" not in os.environ:
        pytest.fail("the Austen corpus is missing: run `make data` first")
    results = run_suite(
        Path(tmp_path) / "faults", short=True, log=lambda s: None, parts=[part],
        shared=shared_reference,
    )  # fmt: skip
    print(table(results))
    assert not failures(results), failures(results) + "\n" + table(results)
    names = {r.scenario for r in results}
    for expected in EXPECTED[part]:
        assert expected in names, expected
    assert sum(r.data_lost for r in results) == 0
