"""A checkpoint from before the optimizer state held the learning-rate scale (decision 71) is
refused with what happened and what to do, not as "another model or optimizer"."""

import jax
import jax.numpy as jnp
import optax
import pytest

from rnnlab import optim
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train.integrity import IncompatibleCheckpointError


def _state(opt_state):
    return {"params": {"w": jnp.ones((3, 2))}, "opt_state": opt_state}


def _saved(tmp_path, state):
    checkpoints = ckpt_lib.Checkpoints(tmp_path / "checkpoints", async_save=False)
    checkpoints.save(5, state, {})
    checkpoints.wait()
    return checkpoints


def test_a_checkpoint_without_the_learning_rate_scale_names_the_older_version(tmp_path):
    params = {"w": jnp.ones((3, 2))}
    # What the chain held before the scale moved into the state: optax's Adam and schedule.
    old = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(1e-3)).init(params)
    new = optim.make(optimizer="adam", lr=1e-3).init(params)
    assert optim.lr_scale(new) is not None and optim.lr_scale(old) is None
    checkpoints = _saved(tmp_path, _state(old))
    abstract = jax.eval_shape(lambda: _state(new))
    with pytest.raises(IncompatibleCheckpointError) as e:
        checkpoints.check_compatible(5, abstract)
    assert "older rnnlab" in str(e.value) and "--restart" in str(e.value)
    checkpoints.close()


def test_another_model_is_still_named_as_another_model(tmp_path):
    params = {"w": jnp.ones((3, 2))}
    state = _state(optim.make(optimizer="adam", lr=1e-3).init(params))
    checkpoints = _saved(tmp_path, state)
    other = jax.eval_shape(lambda: {**state, "params": {"w": jnp.ones((4, 2))}})
    with pytest.raises(IncompatibleCheckpointError, match="another model or optimizer"):
        checkpoints.check_compatible(5, other)
    checkpoints.close()
