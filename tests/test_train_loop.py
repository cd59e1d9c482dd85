"""The training loop on the 8-device test mesh: resume, preemption, early stopping,
checkpoint retention, the non-finite guard and what a run writes."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train.testing import FakeSource


def _config(steps=24, **train):
    c = cfg_lib.base_config()
    c.data.name = "fake_lm"
    c.data.seq_len = 8
    c.model.update({"embed_features": 8, "hidden_features": 16, "num_layers": 2, "dropout": 0.1})
    # total_steps fixed so that every test here shares one optimizer and one compiled step
    c.optim.update(
        {"lr": 3e-3, "clip_norm": 1.0, "schedule": "cosine", "warmup_steps": 4, "total_steps": 24}
    )
    c.train.update(
        {"steps": steps, "batch_size": 16, "log_every": 4, "eval_every": 8, "checkpoint_every": 8}
    )
    c.train.update(train)
    return cfg_lib.lock(c)


def _final_state(config, workdir):
    run = loop.Run(config, workdir, source=FakeSource())
    state, _ = run.restore(run.checkpoints.latest_step())
    return state


def test_interrupted_run_resumes_bit_identical(tmp_path):
    """SIGTERM at step 11 saves a checkpoint; the rerun ends with exactly the parameters,
    optimizer state, carry and random key of an uninterrupted run."""
    config = _config()
    full = loop.train(config, str(tmp_path / "full"), source=FakeSource())
    assert full["stop_reason"] == "completed"

    def preempt(step, state):
        del state
        if step == 11:
            os.kill(os.getpid(), signal.SIGTERM)

    part = str(tmp_path / "part")
    first = loop.train(config, part, source=FakeSource(), hooks=[preempt])
    assert first["stop_reason"] == "preempted" and first["steps"] == 11
    assert 11 in loop.Run(config, part, source=FakeSource()).checkpoints.all_steps()
    second = loop.train(config, part, source=FakeSource())
    assert second["stop_reason"] == "completed" and second["steps"] == 24

    a, b = _final_state(config, str(tmp_path / "full")), _final_state(config, part)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the resumed run's log has each step once
    train_steps = [
        r["step"]
        for r in metrics_lib.read(os.path.join(part, "metrics.jsonl"))
        if r["split"] == "train"
    ]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 24


def test_workdir_holds_logs_checkpoints_and_plots_and_stops_early(tmp_path):
    """Early stopping (patience 1, an impossible min_delta) ends the run at the second
    evaluation; the workdir holds the logs, the plots, the latest and the best checkpoint."""
    workdir = str(tmp_path / "run")
    config = _config(steps=40, keep_checkpoints=1, checkpoint_every=4)
    config = cfg_lib.override(
        config, ["train.early_stopping.patience=1", "train.early_stopping.min_delta=100.0"]
    )
    summary = loop.train(config, workdir, source=FakeSource())
    assert summary["stop_reason"] == "early_stopping" and summary["steps"] == 16
    assert summary["best"]["step"] == 8  # nothing beats the first evaluation by 100

    records = metrics_lib.read(os.path.join(workdir, "metrics.jsonl"))
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "validation"]
    assert [r["step"] for r in train] == [4, 8, 12, 16] and [r["step"] for r in val] == [8, 16]
    for key in ("loss", "lr", "grad_norm", "clipped_grad_norm", "clipped", "tokens_per_second"):
        assert key in train[0], key
    for key in ("loss", "bpc", "perplexity", "accuracy"):
        assert key in val[0], key
    assert train[-1]["loss"] < np.log(6)  # below the uniform distribution over 6 symbols
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    for name in ("loss.png", "grad_norm.png", "lr.png", "bpc.png"):
        assert os.path.getsize(os.path.join(workdir, "plots", name)) > 1000, name
    with open(os.path.join(workdir, "summary.json")) as f:
        saved = json.load(f)
    assert saved["stop_reason"] == "early_stopping"
    assert summary["final"]["validation"]["loss"] == pytest.approx(val[-1]["loss"])
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["early_stopping"]["patience"] == 1

    # checkpoints every 4 steps, keep 1: the latest (16) and the best by validation loss
    run = loop.Run(config, workdir, source=FakeSource())
    losses = {r["step"]: r["loss"] for r in val}
    best = min(losses, key=losses.get)
    assert run.checkpoints.best_step() == best
    assert sorted(run.checkpoints.all_steps()) == sorted({best, 16})


class NaNAfter(FakeSource):
    """Training batches whose weights turn NaN (so the loss does) from a given batch on."""

    def __init__(self, first_bad):
        self.first_bad = first_bad

    def load(self, cfg, **kw):
        it = super().load(cfg, **kw)
        inner = it._make

        def make(k):
            batch = inner(k)
            if kw.get("repeat", True) and k >= self.first_bad:
                batch["weights"] = np.full_like(batch["weights"], np.nan)
            return batch

        it._make = make
        return it


def test_repeated_non_finite_updates_stop_the_run_naming_the_step(tmp_path):
    config = _config(steps=24, log_every=2, eval_every=0, checkpoint_every=2, max_nonfinite=3)
    with pytest.raises(loop.NonFiniteError, match=r"non-finite updates, steps 5 to [78]") as info:
        loop.train(config, str(tmp_path / "run"), source=NaNAfter(first_bad=4))
    assert "loss was nan" in str(info.value)
    # Checkpoints 4 and 6 remain (the run stopped before saving 8); the updates of steps 5
    # and 6 were skipped, so both hold the same parameters.
    run = loop.Run(config, str(tmp_path / "run"), source=FakeSource())
    assert run.checkpoints.all_steps() == [4, 6]
    at4, _ = run.restore(4)
    at6, _ = run.restore(6)
    for x, y in zip(jax.tree.leaves(at4.params), jax.tree.leaves(at6.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert (int(at6.nonfinite_total), int(at6.step)) == (2, 6)
