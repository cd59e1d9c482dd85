"""The divergence guard's restore, end to end: a run whose loss diverges for a while goes
back to the checkpoint from before the divergence and trains on to the end.

Cadence of the fault suite's config (``experiments/faults.py``): a log window and a
checkpoint every 5 steps, ``divergence_patience`` 3, so the guard notices a divergence up
to 15 steps after it began. With the default two checkpoints kept, the one from before
the divergence used to be rotated away by then and the run stopped ("no checkpoint before
step 16 is left to restore"). References: the steps that the injected fault covers, which
fix the checkpoint that must be restored; the metric log's losses before the fault; the
guard's rule, applied by hand to the logged windows."""

import math
import os

import pytest
from fake_data import FakeSource

from rnnlab.train import config as cfg_lib
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train import train

pytestmark = pytest.mark.slow

STEPS, EVERY, PATIENCE = 40, 5, 3
FIRST_BAD, LAST_BAD = 16, 30  # steps whose batches are corrupt the first time they are read


class CorruptOnce(FakeSource):
    """Regression batches whose targets are 1e4 times too large at steps ``first`` to
    ``last`` the first time they are read: a finite loss thousands of times its
    baseline. A rerun of those steps after a restore reads them intact, as a transient
    read error would."""

    def __init__(self, first: int = FIRST_BAD, last: int = LAST_BAD):
        self.first, self.last = first, last
        self.served: set[int] = set()

    def load(self, cfg, **kw):
        it = super().load(cfg, **kw)
        inner = it._make

        def make(k):
            batch = inner(k)
            step = k + 1  # batch k is trained at step k + 1
            if kw.get("repeat", True) and self.first <= step <= self.last:
                if step not in self.served:
                    self.served.add(step)
                    batch = {**batch, "targets": batch["targets"] * 1e4}
            return batch

        it._make = make
        return it


def _config(**overrides):
    c = cfg_lib.base_config()
    c.seed = 0
    c.data.name = "fake_regression"
    c.data.seq_len = 8
    c.model.update({"name": "classifier", "hidden_features": 8})
    c.optim.update({"lr": 1e-2, "clip_norm": 1.0})
    c.train.update(
        {
            "steps": STEPS,
            "batch_size": 16,
            "log_every": EVERY,
            "checkpoint_every": EVERY,
            "eval_every": 0,
            "divergence_patience": PATIENCE,
            "nonfinite_action": "restore",
        }
    )
    c.train.update(overrides)
    return cfg_lib.lock(c)


def test_a_divergence_restores_the_checkpoint_from_before_it_and_the_run_completes(tmp_path):
    workdir = str(tmp_path / "run")
    summary = train(_config(keep_checkpoints=2), workdir, source=CorruptOnce())

    # The off windows end at steps 20, 25 and 30; the first began at step 16, so the
    # checkpoint to restore is 15, which the two latest (20, 25) no longer include.
    records = metrics_lib.read(os.path.join(workdir, "metrics.jsonl"))
    restores = [r for r in records if r["split"] == "nonfinite_restore"]
    assert [(r["step"], r["diverged"], r["first"], r["last"]) for r in restores] == [
        (15, 1, FIRST_BAD, LAST_BAD)
    ]
    assert restores[0]["lr_scale"] == 0.5
    assert summary["stop_reason"] == "completed" and summary["steps"] == STEPS
    assert summary["nonfinite_restores"] == 1

    # Each window once, in order (the abandoned ones after step 15 were dropped), and the
    # windows after the restore are not off by the guard's rule: below 3 x the best window
    # before the fault.
    train_records = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train_records] == list(range(EVERY, STEPS + 1, EVERY))
    losses = {r["step"]: r["loss"] for r in train_records}
    best = min(losses[s] for s in (5, 10, 15))
    after = [losses[s] for s in range(20, STEPS + 1, EVERY)]
    assert all(math.isfinite(x) and x < 3 * best for x in after), (best, after)
    # The corrupt batches were trained once (then abandoned) and read again intact.
    lrs = {r["step"]: r["lr"] for r in train_records}
    assert all(lrs[s] == pytest.approx(5e-3) for s in range(20, STEPS + 1, EVERY)), lrs
    assert lrs[15] == pytest.approx(1e-2)
