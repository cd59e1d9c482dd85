"""Property-based tests (hypothesis) of cells, layers and the config validator.

tests/test_layers.py already checks, over random lengths, that padding garbage is ignored by
RNN, that reversing the valid part twice is the identity and that a one-layer StackedRNN is
the RNN layer. These add the properties it does not cover, each over random shapes, lengths,
cells and compute dtypes:

- a cell's fast path (``project_inputs`` then ``step``) is its Flax call, for any batch rank;
- splitting the time axis and carrying the state across the cut is the unsplit run
  (truncated backpropagation through time relies on it);
- any number of batch dimensions is the same as one flattened batch dimension;
- Bidirectional ignores padding garbage and keeps padded outputs at zero;
- the config validator rejects a value of the wrong type, a non-finite float or any
  command-line text that does not fit, naming the key, and accepts valid values.

Examples are drawn from small shape sets and the layers run jitted, so that examples share
compilations and the file stays fast.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from rnn_reference import random_module

import rnnlab
from rnnlab.cells import GRUCell, LSTMCell, SimpleCell
from rnnlab.train import config as cfg_lib

PROPERTY = settings(max_examples=8, deadline=None, derandomize=True)
# Each new cell kind, dtype and shape compiles the layer: fewer examples where they vary most.
FEW = settings(max_examples=6, deadline=None, derandomize=True)
IN, HIDDEN = 3, 4
BUILD = {
    "simple": lambda dtype: SimpleCell(IN, HIDDEN, dtype=dtype, rngs=nnx.Rngs(0)),
    "lstm": lambda dtype: LSTMCell(IN, HIDDEN, dtype=dtype, rngs=nnx.Rngs(0)),
    "gru": lambda dtype: GRUCell(IN, HIDDEN, dtype=dtype, rngs=nnx.Rngs(0)),
}
DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
# bfloat16 keeps 8 bits of mantissa; different (but equally valid) rounding orders of the
# same sums then differ by a few of its ulps.
TOL = {"float32": 1e-5, "bfloat16": 3e-2}


def make_cell(kind, dtype_name, seed=0):
    return random_module(lambda: BUILD[kind](DTYPES[dtype_name]), seed=seed)


def normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@functools.partial(nnx.jit, static_argnames=("reverse",))
def run(layer, x, **kwargs):
    return layer(x, return_carry=True, **kwargs)


def close(got, want, tol):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(
            np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=tol, atol=tol
        )


kinds = st.sampled_from(sorted(BUILD))
dtypes = st.sampled_from(sorted(DTYPES))


# -- cells ----------------------------------------------------------------------------------


@PROPERTY
@given(kinds, dtypes, st.sampled_from([(2,), (1, 3), (2, 1, 2)]), st.integers(0, 2**16))
def test_fast_path_is_the_cell_call_for_any_batch_rank(kind, dtype, batch, seed):
    cell = make_cell(kind, dtype)
    x = normal(batch + (IN,), seed)
    carry0 = jax.tree.map(lambda z: normal(z.shape, seed + 1), cell.initialize_carry(batch + (IN,)))
    want_carry, want_y = cell(carry0, x)
    params = cell.cell_params()
    carry, y = cell.step(carry0, cell.project_inputs(x), params)
    close((carry, y), (want_carry, want_y), 0.0 if dtype == "float32" else TOL[dtype])
    for leaf in jax.tree.leaves(carry):
        assert leaf.dtype == jnp.float32 and leaf.shape == batch + (HIDDEN,)


# -- RNN ------------------------------------------------------------------------------------


@FEW
@given(kinds, dtypes, st.sampled_from([1, 3]), st.integers(0, 2**16))
def test_carrying_the_state_across_a_cut_is_the_unsplit_run(kind, dtype, cut, seed):
    layer = rnnlab.RNN(make_cell(kind, dtype))
    x = normal((2, 4, IN), seed)
    carry, y = run(layer, x)
    carry_a, y_a = run(layer, x[:, :cut])
    carry_b, y_b = run(layer, x[:, cut:], initial_carry=carry_a)
    close((carry_b, jnp.concatenate([y_a, y_b], axis=1)), (carry, y), TOL[dtype])


@FEW
@given(kinds, st.sampled_from([(2, 3), (3, 1, 2)]), st.booleans(), st.data())
def test_batch_dimensions_are_one_flattened_batch(kind, batch, reverse, data):
    time = 5
    n = math.prod(batch)
    lengths = np.asarray(data.draw(st.lists(st.integers(0, time), min_size=n, max_size=n)))
    seed = data.draw(st.integers(0, 2**16))
    layer = rnnlab.RNN(make_cell(kind, "float32"), reverse=reverse)
    x = normal(batch + (time, IN), seed)
    carry, y = run(layer, x, seq_lengths=jnp.asarray(lengths.reshape(batch)))
    flat_carry, flat_y = run(layer, x.reshape((-1, time, IN)), seq_lengths=jnp.asarray(lengths))
    unflatten = lambda a: a.reshape(batch + a.shape[1:])
    close((carry, y), (jax.tree.map(unflatten, flat_carry), unflatten(flat_y)), 1e-6)


@PROPERTY
@given(dtypes, st.sampled_from([2, 5]), st.data())
def test_bidirectional_ignores_padding_garbage(dtype, time, data):
    lengths = np.asarray(data.draw(st.lists(st.integers(0, time), min_size=3, max_size=3)))
    seed = data.draw(st.integers(0, 2**16))
    layer = rnnlab.Bidirectional(
        rnnlab.RNN(make_cell("lstm", dtype, seed=1)), rnnlab.RNN(make_cell("gru", dtype, seed=2))
    )
    x = normal((3, time, IN), seed)
    pad = np.arange(time)[None, :] >= lengths[:, None]
    garbage = jnp.where(jnp.asarray(pad)[..., None], normal(x.shape, seed + 1) * 100, x)
    carry, y = run(layer, x, seq_lengths=jnp.asarray(lengths))
    carry_g, y_g = run(layer, garbage, seq_lengths=jnp.asarray(lengths))
    close((carry_g, y_g), (carry, y), 0.0)
    assert not np.any(np.asarray(y, np.float32)[pad])


# -- config validator -----------------------------------------------------------------------


def _engine_keys():
    base = cfg_lib.base_config()
    keys = [k for k in cfg_lib.flat_keys(base) if k.split(".")[0] in cfg_lib.ENGINE_GROUPS]
    return base, sorted(keys)


BASE, ENGINE_KEYS = _engine_keys()


def _get(config, key):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _faults_config():
    c = cfg_lib.base_config()
    c.data.name = "austen"
    return c


def _replaced(key, value):
    """The faults-like config with ``key`` set to ``value`` whatever its type (as an
    experiment file building its own groups, or a hand-edited config.json, could)."""
    data = _faults_config().to_dict()
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return ml_collections.ConfigDict(data)


def _wrong_values(default):
    if isinstance(default, bool):
        return st.sampled_from([1, 0.5, "yes", None])
    if isinstance(default, int):
        return st.sampled_from([1.5, "3", True, None, (1,)])
    if isinstance(default, float):
        return st.sampled_from(["0.1", None, True, math.nan, math.inf, -math.inf])
    if isinstance(default, str):
        return st.sampled_from([1, 0.5, None, ("a",)])
    return st.sampled_from([1, "x", None])  # tuples


@PROPERTY
@given(st.data())
def test_a_wrong_type_or_non_finite_value_is_rejected_naming_its_key(data):
    key = data.draw(st.sampled_from(ENGINE_KEYS), label="key")
    value = data.draw(_wrong_values(_get(BASE, key)), label="value")
    with pytest.raises(cfg_lib.ConfigError) as info:
        cfg_lib.validate(_replaced(key, value))
    assert info.value.key == key, str(info.value)


_TEXT = st.one_of(
    st.sampled_from(["-1", "0", "1", "2.5", "nan", "inf", "1e9", "()", "(1, 2)", "True", "x"]),
    st.text(alphabet="abc019.-(),' ", max_size=6),
)


@PROPERTY
@given(st.sampled_from(ENGINE_KEYS), _TEXT)
def test_any_command_line_text_is_accepted_or_rejected_naming_its_key(key, text):
    config = cfg_lib.lock(_faults_config())
    try:
        cfg_lib.override(config, [f"{key}={text}"])
        cfg_lib.validate(cfg_lib.resolved(config))
    except cfg_lib.ConfigError as e:
        # A combination (warmup longer than the schedule, ...) may name its other key.
        assert e.key == key or key in str(e), str(e)


VALID = {
    "train.steps": st.integers(1, 10**6),
    "train.batch_size": st.sampled_from([1, 8, 64]),
    "train.log_every": st.integers(1, 1000),
    "train.checkpoint_every": st.integers(0, 1000),
    "train.keep_checkpoints": st.integers(1, 10),
    "train.max_nonfinite": st.integers(1, 100),
    "train.nonfinite_action": st.sampled_from(["stop", "restore"]),
    "train.nonfinite_lr_factor": st.floats(0.01, 1.0),
    "train.preemption_grace_s": st.floats(0.0, 3600.0),
    "optim.lr": st.floats(1e-6, 1.0),
    "optim.optimizer": st.sampled_from(["sgd", "adam", "rmsprop"]),  # adamw needs weight_decay
    "optim.clip_norm": st.floats(0.0, 10.0),
    "sample.temperature": st.floats(0.0, 2.0),
    "sample.top_p": st.floats(0.01, 1.0),
    "eval.max_batches": st.integers(0, 100),
}


@PROPERTY
@given(st.fixed_dictionaries({}, optional=VALID))
def test_valid_values_are_accepted(values):
    config = _faults_config()
    config.train.eval_every = 10  # so that any checkpoint_every works with restore
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    cfg_lib.validate(cfg_lib.resolved(cfg_lib.lock(config)), {"data_parallel": 1})
