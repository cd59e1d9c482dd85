"""What the one sequence runner takes from the cell contract and the layer's arguments:
per-step extras that a cell aggregates itself (the runner knows nothing of batch
normalisation), and ``hoist_input_projection`` on the fused path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
from rnnlab.cells import LSTMCell, SimpleCell
from rnnlab.layers import dispatch

B, T, F, H = 3, 7, 2, 5
LENGTHS = np.array([7, 4, 0])


class CountingCell(SimpleCell):
    """A simple cell that, in training, counts the valid examples of every step it ran:
    a cell of its own bookkeeping, through the contract's extras hooks only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_running_average = False
        self.steps = nnx.BatchStat(jnp.zeros((), jnp.float32))
        self.total = nnx.BatchStat(jnp.zeros((), jnp.float32))
        self.seen = nnx.BatchStat(jnp.zeros((T,), jnp.float32))

    @property
    def step_extras(self) -> bool:
        return not self.use_running_average

    def step_with_extras(self, params, carry, xp, valid):
        carry, y = self.step_with(params, carry, xp)
        weight = jnp.ones(xp.shape[:-1]) if valid is None else valid.astype(jnp.float32)
        return carry, y, jnp.sum(weight)

    def aggregate_extras(self, extras, valid):
        self.seen[...] = extras
        self.steps[...] = self.steps[...] + jnp.sum(valid.astype(jnp.float32))
        self.total[...] = self.total[...] + jnp.sum(extras)


def _x(seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, F)), jnp.float32)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_cell_with_per_step_extras_runs_on_the_scan_and_aggregates_them(reverse):
    cell = CountingCell(F, H, rngs=nnx.Rngs(0))
    layer = rnnlab.RNN(cell, reverse=reverse)
    x = _x()
    with dispatch.recording() as record:
        y = layer(x, seq_lengths=jnp.asarray(LENGTHS))
    assert record == [("CountingCell", "scan", "per-step extras of CountingCell")]
    # Closed form: step t saw the examples longer than t (in processing order too, since
    # reversal stays within each valid prefix).
    per_step = (np.arange(T)[:, None] < LENGTHS[None]).sum(1)
    np.testing.assert_array_equal(cell.seen[...], per_step)
    assert float(cell.steps[...]) == LENGTHS.sum() == float(cell.total[...])
    # The outputs are the plain cell's: evaluation mode skips the extras and moves nothing.
    layer.eval()
    with dispatch.recording() as record:
        plain = layer(x, seq_lengths=jnp.asarray(LENGTHS))
    assert "extras" not in str(record)
    np.testing.assert_allclose(y, plain, rtol=1e-6, atol=1e-6)
    assert float(cell.steps[...]) == LENGTHS.sum()


def test_a_cell_with_extras_refuses_a_step_hook_and_the_fused_path():
    cell = CountingCell(F, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="per-step extras"):
        rnnlab.RNN(cell, implementation="fused")(_x())
    with pytest.raises(ValueError, match="step_transform or step_inputs hook"):
        rnnlab.RNN(cell)(_x(), step_transform=lambda step: step)


def _dots(jaxpr, in_loop=False):
    """``(in a loop, operand shapes)`` of every dot_general in ``jaxpr`` and its sub-jaxprs."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append((in_loop, tuple(tuple(v.aval.shape) for v in eqn.invars)))
        loop = in_loop or eqn.primitive.name in ("scan", "while")
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out.extend(_dots(inner, loop))
    return out


@pytest.mark.parametrize("cell_kind", ["lstm", "gru"])
def test_the_fused_path_honours_hoist_input_projection(cell_kind):
    """Hoisted: one ``[T, B, F] x [F, G]`` product before the loop; not hoisted: none, the
    projection is in the loop. The results agree with the scan path either way."""
    make = LSTMCell if cell_kind == "lstm" else rnnlab.cells.GRUCell
    cell = make(F, H, rngs=nnx.Rngs(1))
    x = _x(2)
    want = rnnlab.RNN(cell, implementation="scan")(x)
    for hoist in (True, False):
        layer = rnnlab.RNN(cell, implementation="fused", hoist_input_projection=hoist)
        dots = _dots(jax.make_jaxpr(lambda v, f=layer: f(v))(x).jaxpr)
        hoisted = [s for loop, s in dots if not loop and s[0][:1] == (T,) and s[0][-1] == F]
        assert bool(hoisted) == hoist, (hoist, dots)
        np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-6)
