"""Weight averaging in the training engine: ``optim.optimizer="nt_asgd"`` and
``optim.ema_decay``. The parameters the engine evaluates are compared with averages computed
here from the iterates of the run (recorded by a hook) and the textbook rules: the
non-monotone trigger of Merity et al. (2017, Algorithm 1) and an exponential moving average."""

import os

import jax
import numpy as np
import pytest
from fake_data import FakeSource

from rnnlab import optim
from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train import metric_log as metrics_lib


def _config(optim_overrides, steps, eval_every):
    c = cfg_lib.base_config()
    c.data.name = "fake_lm"
    c.data.seq_len = 8
    c.model.update({"embed_features": 8, "hidden_features": 8, "num_layers": 1, "dropout": 0.0})
    c.optim.update({"clip_norm": 1.0, "schedule": "constant", **optim_overrides})
    c.train.update(
        {
            "steps": steps,
            "batch_size": 8,
            "log_every": steps,
            "eval_every": eval_every,
            "checkpoint_every": steps,
        }
    )
    c.sample.length = 0
    return cfg_lib.lock(c)


def _train_recording(config, workdir):
    """Trains; returns ``{step: host copy of the parameters after that step}``."""
    iterates = {}

    def record(step, state):
        iterates[step] = jax.tree.map(lambda x: np.array(x, np.float64), state.params)

    loop.train(config, workdir, source=FakeSource(), hooks=[record])
    return iterates


def _final(config, workdir):
    run = loop.Run(config, workdir, source=FakeSource())
    state, _ = run.restore(run.checkpoints.latest_step())
    return run, state


def _assert_close(tree, ref):
    flat, ref_flat = jax.tree.leaves(tree), jax.tree.leaves(ref)
    assert len(flat) == len(ref_flat) > 0
    for x, y in zip(flat, ref_flat, strict=True):
        np.testing.assert_allclose(np.asarray(x), y, rtol=2e-5, atol=2e-6)


def _textbook_trigger(losses, nonmono):
    """Index of the validation at which NT-ASGD starts averaging (Merity et al. 2017,
    Algorithm 1: ``t > n and v > min(logs[:-n])``), or None."""
    logs = []
    for t, v in enumerate(losses):
        if len(logs) > nonmono and v > min(logs[:-nonmono]):
            return t
        logs.append(v)
    return None


def test_nt_asgd_evaluates_the_uniform_average_of_the_iterates_after_the_trigger(tmp_path):
    """SGD at a learning rate high enough for the validation loss to go up and down,
    validated after every step with ``nonmono=1``: once the trigger fires at a validation,
    the evaluated parameters are the mean of the iterates of the updates that follow it,
    and the logged validation loss is that of the mean."""
    steps = 14
    config = _config({"optimizer": "nt_asgd", "lr": 20.0, "nonmono": 1}, steps, eval_every=1)
    workdir = str(tmp_path / "run")
    iterates = _train_recording(config, workdir)
    records = metrics_lib.read(os.path.join(workdir, "metrics.jsonl"))
    val = [r for r in records if r["split"] == "validation"]
    assert [r["step"] for r in val] == list(range(1, steps + 1))
    t = _textbook_trigger([r["loss"] for r in val], nonmono=1)
    assert t is not None and val[t]["step"] <= steps - 3, "the trigger must fire early"
    start = val[t]["step"]
    after = [iterates[s] for s in range(start + 1, steps + 1)]
    reference = jax.tree.map(lambda *ws: np.mean(np.stack(ws), axis=0), *after)

    run, state = _final(config, workdir)
    _assert_close(run.eval_state(state).params, reference)
    _assert_close(state.params, iterates[steps])  # training goes on from the raw iterate
    assert not np.allclose(jax.tree.leaves(reference)[0], jax.tree.leaves(iterates[steps])[0])

    # Before the trigger the evaluated parameters were the iterates themselves; after it,
    # the logged loss is the loss of the average, as an engine without averaging computes it.
    plain = loop.Run(
        _config({"optimizer": "sgd", "lr": 20.0}, steps, eval_every=1),
        str(tmp_path / "plain"),
        source=FakeSource(),
    )
    host_state = jax.tree.map(np.asarray, state)
    for s, want in ((start, iterates[start]), (steps, reference)):
        got = plain.evaluate(host_state.replace(params=want), "validation")["loss"]
        assert got == pytest.approx(val[s - 1]["loss"], rel=1e-4)


def test_ema_decay_evaluates_the_moving_average_of_the_iterates(tmp_path):
    """``a_0 = w_0``, ``a_k = d a_{k-1} + (1 - d) w_k`` (Polyak & Juditsky 1992 style
    exponential averaging) for Adam with ``ema_decay=d``."""
    steps, d = 6, 0.6
    config = _config({"optimizer": "adam", "lr": 0.05, "ema_decay": d}, steps, eval_every=0)
    workdir = str(tmp_path / "run")
    iterates = _train_recording(config, workdir)
    run, state = _final(config, workdir)
    average = jax.tree.map(lambda x: np.array(x, np.float64), run.initial_state().params)
    for s in range(1, steps + 1):
        average = jax.tree.map(lambda a, w: d * a + (1 - d) * w, average, iterates[s])
    _assert_close(run.eval_state(state).params, average)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"optimizer": "nt_asgd", "nonmono": 0}, "nonmono"),
        ({"optimizer": "sgd", "ema_decay": 1.0}, "ema_decay"),
        ({"optimizer": "nt_asgd", "ema_decay": 0.9}, "ema_decay"),
    ],
)
def test_bad_averaging_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        optim.make(lr=0.1, **kwargs)
