"""Sequence-parallel linear scan against a step-by-step Python loop (8 CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from rnnlab import parallel, scan


@jax.jit
def loop_reference(a, b, h0):
    """h_t = a_t * h_{t-1} + b_t, one step at a time (a Python loop, unrolled by jit)."""
    h, out = h0, []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return jnp.stack(out)


def _inputs(time, shape, seed=0):
    ka, kb, kh = jax.random.split(jax.random.key(seed), 3)
    a = jax.random.uniform(ka, (time, *shape), minval=0.6, maxval=1.0)
    b = jax.random.normal(kb, (time, *shape))
    h0 = jax.random.normal(kh, shape)
    return a, b, h0


@pytest.mark.parametrize(
    "axes, time, shape",
    [({"seq": 8}, 16, (3,)), ({"seq": 8}, 8, (2, 3)), ({"data": 2, "seq": 4}, 12, (4,))],
    ids=["8x2steps", "1step-per-device", "seq4-of-2x4"],
)
def test_values_and_gradients_match_the_loop(axes, time, shape):
    mesh = parallel.make_mesh(axes)
    a, b, h0 = _inputs(time, shape)
    parallel_fn = jax.jit(
        lambda a, b, h0: scan.sequence_parallel_linear_scan(a, b, mesh, "seq", h0)
    )
    np.testing.assert_allclose(
        parallel_fn(a, b, h0), loop_reference(a, b, h0), rtol=1e-5, atol=1e-6
    )

    weights = jax.random.normal(jax.random.key(7), (time, *shape))

    def objective(fn):
        return lambda a, b, h0: jnp.sum(weights * jnp.tanh(fn(a, b, h0)))

    got = jax.jit(jax.grad(objective(parallel_fn), argnums=(0, 1, 2)))(a, b, h0)
    want = jax.jit(jax.grad(objective(loop_reference), argnums=(0, 1, 2)))(a, b, h0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_zero_initial_state_and_output_sharding():
    mesh = parallel.make_mesh({"seq": 8})
    a, b, _ = _inputs(16, (3,))
    h = jax.jit(lambda a, b: scan.sequence_parallel_linear_scan(a, b, mesh, "seq"))(a, b)
    np.testing.assert_allclose(h, loop_reference(a, b, jnp.zeros(3)), rtol=1e-5, atol=1e-6)
    assert h.sharding.spec == P("seq")
    assert {s.data.shape for s in h.addressable_shards} == {(2, 3)}


def test_batch_dimension_can_be_split_over_another_axis():
    mesh = parallel.make_mesh({"seq": 4, "data": 2})
    a, b, h0 = _inputs(8, (4, 2))
    spec = P("seq", "data")
    h = jax.jit(
        lambda a, b, h0: scan.sequence_parallel_linear_scan(a, b, mesh, "seq", h0, spec=spec)
    )(a, b, h0)
    np.testing.assert_allclose(h, loop_reference(a, b, h0), rtol=1e-5, atol=1e-6)
    assert {s.data.shape for s in h.addressable_shards} == {(2, 2, 2)}


def test_decay_broadcasts_over_features():
    mesh = parallel.make_mesh({"seq": 8})
    a = jax.random.uniform(jax.random.key(3), (16, 1), minval=0.5, maxval=1.0)
    b = jax.random.normal(jax.random.key(4), (16, 5))
    h = jax.jit(lambda a, b: scan.sequence_parallel_linear_scan(a, b, mesh, "seq"))(a, b)
    a_full = jnp.broadcast_to(a, b.shape)
    np.testing.assert_allclose(h, loop_reference(a_full, b, jnp.zeros(5)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"axis": "time"}, r"axis must be one of the mesh axes \('seq',\), got 'time'"),
        ({"length": 12}, "time length 12 of a and b must be divisible by the size 8"),
        ({"spec": P(None, "seq")}, "spec must start with the time axis 'seq'"),
        ({"h0": jnp.zeros(4)}, r"h0 must have the shape of one step \(3,\), got \(4,\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    mesh = parallel.make_mesh({"seq": 8})
    a, b, _ = _inputs(kwargs.pop("length", 16), (3,))
    axis = kwargs.pop("axis", "seq")
    with pytest.raises(ValueError, match=message):
        scan.sequence_parallel_linear_scan(a, b, mesh, axis, **kwargs)


def test_the_mesh_package_names_the_same_function():
    assert parallel.sequence_parallel_linear_scan is scan.sequence_parallel_linear_scan
