"""The training loop on the 8-device test mesh: resume, preemption, early stopping,
checkpoint retention, the non-finite guard and what a run writes."""

import json
import os
import signal

import jax
import numpy as np
import pytest
from fake_data import FakeSource

from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train import progress as progress_lib
from rnnlab.train.divergence import DivergenceError

# Every test here trains: make test hands this file out first (tests/conftest.py).
pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """An uninterrupted run of ``_config()`` (24 steps), the reference of the resume tests;
    they only read it."""
    workdir = str(tmp_path_factory.mktemp("full") / "run")
    summary = loop.train(_config(), workdir, source=FakeSource())
    assert summary["stop_reason"] == "completed"
    return workdir


def test_interrupted_run_resumes_bit_identical(full, tmp_path):
    """SIGTERM at step 11 saves a checkpoint; the rerun ends with exactly the parameters,
    optimizer state, carry and random key of an uninterrupted run."""
    config = _config()

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

    a, b = _final_state(config, full), _final_state(config, part)
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


def test_a_streak_before_any_checkpoint_names_no_checkpoint(tmp_path):
    """The message used to say "the last checkpoint before step 1 holds the parameters"
    when no checkpoint existed."""
    config = _config(steps=24, log_every=2, eval_every=0, checkpoint_every=20, max_nonfinite=3)
    with pytest.raises(loop.NonFiniteError) as info:
        loop.train(config, str(tmp_path / "run"), source=NaNAfter(first_bad=0))
    assert "no checkpoint was written before step 1" in str(info.value)
    assert not os.path.exists(os.path.join(tmp_path, "run", "checkpoints", "20"))


class HugeTargetsAfter(FakeSource):
    """Regression batches whose targets jump by a factor 1e4 from a given batch on: a finite
    loss thousands of times its baseline, which no update can follow."""

    def __init__(self, first_bad):
        self.first_bad = first_bad

    def load(self, cfg, **kw):
        it = super().load(cfg, **kw)
        inner = it._make

        def make(k):
            batch = inner(k)
            if kw.get("repeat", True) and k >= self.first_bad:
                batch["targets"] = batch["targets"] * 1e4
            return batch

        it._make = make
        return it


def _regression_config(**train):
    c = cfg_lib.base_config()
    c.data.name = "fake_regression"
    c.data.seq_len = 8
    c.model.update({"name": "classifier", "hidden_features": 8})
    c.optim.update({"lr": 1e-2, "clip_norm": 1.0})
    c.train.update(
        {"steps": 40, "batch_size": 16, "log_every": 2, "eval_every": 0, "checkpoint_every": 4}
    )
    c.train.update(train)
    return cfg_lib.lock(c)


def test_divergence_restores_the_checkpoint_before_it_then_gives_up(tmp_path):
    """From batch 10 on the loss is ~1e8: three off windows (steps 12, 14, 16) roll back to
    checkpoint 8 (the newest before the first off window began, step 11), with the learning
    rate halved, until the restores run out."""
    workdir = str(tmp_path / "run")
    config = _regression_config(nonfinite_action="restore", nonfinite_max_restores=2)
    with pytest.raises(DivergenceError) as info:
        loop.train(config, workdir, source=HugeTargetsAfter(first_bad=10))
    text = str(info.value)
    assert "diverged" in text and "after 2 restore(s)" in text, text
    assert "checkpoint 8 holds the parameters from before step 11" in text, text
    records = metrics_lib.read(os.path.join(workdir, "metrics.jsonl"))
    restores = [r for r in records if r["split"] == "nonfinite_restore"]
    assert [(r["step"], r["diverged"], r["lr_scale"]) for r in restores] == [
        (8, 1, 0.5),
        (8, 1, 0.25),
    ]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == sorted(train_steps)  # each restore dropped what it abandoned
    # The windows trained after a restore ran at optim.lr times the scale of that restore
    # (kept in the optimizer state, which the logged lr is read from).
    scale, after = 1.0, 0
    for r in records:
        if r["split"] == "nonfinite_restore":
            scale = r["lr_scale"]
        elif r["split"] == "train":
            assert r["lr"] == pytest.approx(1e-2 * scale, rel=1e-6), (r["step"], scale)
            after += scale < 1
    assert after >= 2


def test_divergence_guard_is_quiet_on_an_ordinary_run(tmp_path):
    summary = loop.train(_regression_config(steps=24), str(tmp_path / "run"), source=FakeSource())
    assert summary["stop_reason"] == "completed"


class FakeClock:
    """Seconds that pass only when told: 1 ms per reading, plus what ``advance`` adds."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1e-3
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """One 16-step run watched three ways, for the tests that only read what it saw: a fake
    clock under evaluations and saves that take 1000 s each, every file write of the metric
    log, and a logger's records. ``(workdir, writes, seen)``."""
    clock, writes, seen = FakeClock(), [], []
    evaluate, save = loop.Run.evaluate, loop.ckpt_lib.Checkpoints.save
    real_write = metrics_lib.files.write_text

    def slow_evaluate(self, *a, **k):
        clock.advance(1000.0)
        return evaluate(self, *a, **k)

    def slow_save(self, *a, **k):
        clock.advance(1000.0)
        return save(self, *a, **k)

    workdir = str(tmp_path_factory.mktemp("watched") / "run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(progress_lib.time, "perf_counter", clock)
        monkeypatch.setattr(loop.Run, "evaluate", slow_evaluate)
        monkeypatch.setattr(loop.ckpt_lib.Checkpoints, "save", slow_save)
        monkeypatch.setattr(
            metrics_lib.files, "write_text", lambda p, t: (writes.append(p), real_write(p, t))
        )
        loop.train(
            _config(steps=16),
            workdir,
            source=FakeSource(),
            loggers=[lambda step, split, m: seen.append((step, split, m["loss"]))],
        )
    return workdir, writes, seen


def _train_records(workdir):
    return [
        r for r in metrics_lib.read(os.path.join(workdir, "metrics.jsonl")) if r["split"] == "train"
    ]


def test_throughput_leaves_out_evaluation_checkpoint_and_compile_time(watched):
    """Evaluations and saves that take 1000 s of (fake) time must not change the rate of
    the windows that hold them: before, the window of step 8 read ~1000 times lower."""
    rates = {r["step"]: r["tokens_per_second"] for r in _train_records(watched[0])}
    assert set(rates) == {4, 8, 12, 16}
    # 16 x 8 tokens per step; fake time passes only by clock readings outside the pauses.
    assert max(rates.values()) / min(rates.values()) < 3, rates
    assert min(rates.values()) > 1000, rates


def test_metric_log_is_appended_not_rewritten(watched):
    workdir, writes, _ = watched
    assert not [p for p in writes if p.endswith("metrics.jsonl")], writes
    assert [r["step"] for r in _train_records(workdir)] == [4, 8, 12, 16]


def _events(logdir):
    """``[(tag, step)]`` that TensorBoard shows: event files read in the order written, a
    SessionLog START at step s dropping the events already read at steps >= s."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2

    seen = []
    for path in sorted(
        glob.glob(os.path.join(logdir, "events.out.tfevents.*")), key=os.path.getmtime
    ):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            if event.HasField("session_log") and event.session_log.status == 1:  # START
                seen = [(t, s) for t, s in seen if s < event.step]
            for value in event.summary.value:
                seen.append((value.tag, event.step))
    return seen


def test_tensorboard_is_purged_to_the_resumed_step(full, tmp_path):
    """A run preempted at step 11 logged steps 4 and 8 and saved checkpoint 11 between
    log steps; one killed after logging step 12 but before checkpointing it is what is
    simulated here: its events at step 12 must not show twice after the resume."""
    config = _config()

    def kill_after_logging(step, state):
        del state
        if step == 13:  # step 12's window is logged; the newest checkpoint is 8
            raise KeyboardInterrupt

    part = str(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, part, source=FakeSource(), hooks=[kill_after_logging])
    # A KeyboardInterrupt saves step 13 too: remove it, as a SIGKILL would never have saved it.
    import shutil

    shutil.rmtree(os.path.join(part, "checkpoints", "13"))
    loop.train(config, part, source=FakeSource())
    got, want = (
        _events(os.path.join(part, "tensorboard")),
        _events(os.path.join(full, "tensorboard")),
    )
    assert sorted(got) == sorted(want)
    assert len(got) == len(set(got))


def test_loggers_receive_every_record(watched):
    workdir, _, seen = watched
    records = metrics_lib.read(os.path.join(workdir, "metrics.jsonl"))
    assert seen == [(r["step"], r["split"], r["loss"]) for r in records]
