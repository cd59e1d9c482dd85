"""The training loop's guards as objects, without training: what they find in hand-made
metric streams, what they decide, and what a checkpoint keeps of them."""

import os
import signal
import types

import pytest

from rnnlab.train import guards
from rnnlab.train.divergence import DivergenceError
from rnnlab.train.ending import Finished
from rnnlab.train.nonfinite import NonFiniteError


def _config(**train):
    t = {
        "max_nonfinite": 3,
        "divergence_patience": 2,
        "divergence_factor": 3.0,
        "nonfinite_action": "restore",
        "nonfinite_max_restores": 2,
        "nonfinite_lr_factor": 0.5,
        "log_every": 4,
    }
    t.update(train)
    debug = types.SimpleNamespace(nan_at_steps=(5,))
    return types.SimpleNamespace(train=types.SimpleNamespace(**t), debug=debug)


class _Checkpoints:
    def __init__(self, steps):
        self.steps = steps

    def all_steps(self):
        return list(self.steps)

    def reached_preemption(self, step):
        del step
        return False


def _rollback(**train):
    return guards.Rollback(_config(**train), ["w", "b"], uniform_loss=None)


def _step(nonfinite, loss=1.0):
    return {"nonfinite": float(nonfinite), "loss": loss, "grad_max": 7.0, "grad_max_leaf": 1.0}


def test_three_skipped_updates_in_a_row_are_trouble_from_the_first():
    r = _rollback()
    found = []
    # Checked every 3 steps (steps 3, 6, 9): the streak of steps 3-4 is broken by step 5.
    for step, bad in enumerate([0, 0, 1, 1, 0, 1, 1, 1, 0], start=1):
        r.add(step, _step(bad))
        found.append(r.check(step, log_now=False, window={}))
    assert found[:8] == [None] * 8
    trouble = found[8]
    assert (trouble.first, trouble.error, trouble.fields) == (
        6,
        NonFiniteError,
        {"first": 6, "last": 8},
    )
    assert "steps 6 to 8" in trouble.what and "in b" in trouble.what


def test_two_windows_far_above_the_baseline_are_trouble_from_the_first_windows_start():
    r = _rollback(max_nonfinite=0)
    losses = {4: 1.0, 8: 0.9, 12: 5.0, 16: 6.0}  # 5.0 and 6.0 > 3 x 0.9
    found = {s: r.check(s, log_now=True, window={"loss": v}) for s, v in losses.items()}
    assert found[4] is found[8] is found[12] is None
    trouble = found[16]
    assert (trouble.first, trouble.error) == (9, DivergenceError)  # window 9..12
    assert trouble.fields == {"first": 9, "last": 16, "diverged": 1}


def test_the_target_is_the_newest_checkpoint_before_the_trouble_until_restores_run_out():
    r = _rollback()
    trouble = guards.Trouble(9, "the loss diverged", DivergenceError, {})
    checkpoints = _Checkpoints([4, 8, 12])
    assert r.target(trouble, checkpoints) == 8
    r.restored()
    r.restored()
    assert (r.restores, r.lr_scale) == (2, 0.25)
    with pytest.raises(DivergenceError, match=r"after 2 restore\(s\). checkpoint 8 holds"):
        r.target(trouble, checkpoints)
    with pytest.raises(DivergenceError, match="no checkpoint before step 3 is left"):
        _rollback().target(guards.Trouble(3, "x", DivergenceError, {}), checkpoints)


def test_stop_raises_at_once_naming_the_checkpoint_before():
    r = _rollback(nonfinite_action="stop")
    trouble = guards.Trouble(9, "3 consecutive non-finite updates", NonFiniteError, {})
    with pytest.raises(
        NonFiniteError, match="checkpoint 8 holds the parameters from before step 9"
    ):
        r.target(trouble, _Checkpoints([8]))


def test_a_checkpoint_keeps_the_windows_and_counts_and_a_restore_reloads_only_the_windows():
    r = _rollback(max_nonfinite=0)
    r.check(4, log_now=True, window={"loss": 2.0})
    r.restored()
    saved = r.state()
    assert saved["divergence"]["best"] == 2.0
    assert (saved["lr_scale"], saved["nonfinite_restores"]) == (0.5, 1)
    resumed = _rollback()
    resumed.load(saved)
    assert (resumed.divergence.best, resumed.lr_scale, resumed.restores) == (2.0, 0.5, 1)
    restored = _rollback()
    restored.restored()
    restored.restored()
    restored.load_windows(saved)
    assert (restored.divergence.best, restored.lr_scale, restored.restores) == (2.0, 0.25, 2)


def test_fault_injection_poisons_the_named_step_once():
    r = _rollback()
    batch = {"weights": [[1.0, 1.0]]}
    assert r.poison(batch, 4) is batch
    poisoned = r.poison(batch, 5)
    assert str(poisoned["weights"][0][0]) == "nan"
    assert r.poison(batch, 5) is batch  # the replay after a restore is clean


def test_preemption_defers_an_evaluation_that_would_not_fit_in_the_grace_period():
    p = guards.Preemption(grace_s=30.0)
    p.arm()
    try:
        assert not p.poll(3, _Checkpoints([]))
        assert not p.defer(False)
        os.kill(os.getpid(), signal.SIGTERM)
        assert p.poll(4, _Checkpoints([]))
        assert p.defer(True)  # no evaluation timed yet: its length is unknown
        with p.timing():
            pass
        assert not p.defer(True)  # ~0 s, twice, fits in 30 s
        p.grace = 0.0
        assert p.defer(True)
        assert p.stop_reason() == "preempted"
        assert p.describe(4).startswith("preempted at step 4: checkpoint saved")
    finally:
        p.close()
    assert p.state(True) == {"eval_pending": True} and p.state(False) == {}
    p.load({"eval_pending": True})
    assert p.pending


def test_finished_says_how_the_run_ended_and_rebuilds_its_final_metrics():
    f = Finished(total=24)
    assert f.state("completed") == {"stop_reason": "completed", "steps": 24}
    assert f.state("preempted") == {} and f.state("") == {}
    f.load({}, 24)
    assert f.reason == "completed"
    f.load({"stop_reason": "early_stopping", "steps": 24}, 16)
    assert f.reason == "early_stopping"
    f.load({"stop_reason": "early_stopping", "steps": 20}, 16)  # extended since: trains on
    assert f.reason == ""
    records = [
        {"step": 8, "split": "train", "time": 1.0, "loss": 2.0},
        {"step": 16, "split": "train", "time": 2.0, "loss": 1.5},
        {"step": 20, "split": "train", "time": 3.0, "loss": 1.0},
        {"step": 16, "split": "validation", "time": 2.5, "loss": 1.7},
    ]
    train, evaluation = f.rebuild({"loss": 1.7}, records, 16)
    assert train == {"loss": 1.5} and evaluation == {"loss": 1.7} and f.rebuilt
