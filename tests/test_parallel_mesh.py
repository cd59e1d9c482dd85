"""Meshes, batch shardings, sharding rules and the host-side batch helpers (8 CPU devices)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from rnnlab import parallel


def test_make_mesh_default_is_data_over_all_devices():
    mesh = parallel.make_mesh()
    assert dict(mesh.shape) == {"data": 8}


@pytest.mark.parametrize(
    "axes, expected",
    [
        ({"data": -1, "fsdp": 2}, {"data": 4, "fsdp": 2}),
        ([("data", 2), ("fsdp", -1)], {"data": 2, "fsdp": 4}),
        ({"data": 2, "fsdp": 4}, {"data": 2, "fsdp": 4}),
        ({"fsdp": 8}, {"fsdp": 8}),
    ],
)
def test_make_mesh_fills_the_minus_one_axis(axes, expected):
    mesh = parallel.make_mesh(axes)
    assert dict(mesh.shape) == expected
    assert list(mesh.axis_names) == list(expected)
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


def test_make_mesh_on_given_devices():
    mesh = parallel.make_mesh({"data": -1}, devices=jax.devices()[:2])
    assert dict(mesh.shape) == {"data": 2}
    assert {d.id for d in mesh.devices.flat} == {d.id for d in jax.devices()[:2]}


@pytest.mark.parametrize(
    "axes, message",
    [
        ({"data": 3, "fsdp": -1}, "axis 'data' has size 3"),
        ({"data": -1, "fsdp": 3}, "axis 'fsdp' has size 3"),
        ({"data": 4, "fsdp": 4}, "multiply to 16 but there are 8 devices"),
        ({"data": -1, "fsdp": -1}, "at most one mesh axis may be -1"),
        ({"data": 0}, "mesh axis 'data' must have a positive int size"),
        ({"data": 2.0, "fsdp": -1}, "mesh axis 'data' must have a positive int size"),
        ({}, "at least one mesh axis"),
        ("data", "mapping or a sequence"),
        ([("data", 2), ("data", 4)], "distinct"),
    ],
)
def test_make_mesh_rejects_bad_axes(axes, message):
    with pytest.raises(ValueError, match=message):
        parallel.make_mesh(axes)


def test_mesh_axis_not_dividing_names_both_numbers():
    with pytest.raises(ValueError, match=r"'fsdp' has size 3, which does not divide the 8"):
        parallel.make_mesh({"fsdp": 3, "data": -1})


def test_data_sharding_splits_the_batch_over_data_and_fsdp_in_mesh_order():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    sharding = parallel.data_sharding(mesh)
    assert sharding.spec == P(("data", "fsdp"))
    x = jax.device_put(np.arange(16.0, dtype=np.float32).reshape(16, 1), sharding)
    # Example i is on mesh position data = i // 8, fsdp = (i // 2) % 4.
    for coords in np.ndindex(2, 4):
        device = mesh.devices[coords]
        (shard,) = [s for s in x.addressable_shards if s.device == device]
        k = coords[0] * 4 + coords[1]
        np.testing.assert_array_equal(np.asarray(shard.data)[:, 0], [2 * k, 2 * k + 1])


def test_data_sharding_ignores_model_axes_and_replicated_is_whole():
    mesh = parallel.make_mesh({"data": 4, "model": 2})
    assert parallel.data_sharding(mesh).spec == P(("data",))
    assert parallel.data_parallel_size(mesh) == 4
    assert parallel.replicated(mesh).spec == P()
    assert parallel.data_sharding(parallel.make_mesh({"model": 8})).spec == P()


def test_local_batch_size_and_shard_on_one_process():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    assert parallel.local_batch_size(32, mesh) == 32
    assert parallel.local_batch_size(8) == 8
    assert parallel.process_data_shard(mesh) == (0, 1)
    assert parallel.process_data_shard() == (0, 1)
    assert parallel.process_index() == 0
    assert parallel.process_count() == 1
    assert parallel.is_main_process()
    assert parallel.any_process(True) is True and parallel.any_process(False) is False


@pytest.mark.parametrize("bad, message", [(12, "divisible by 8 data-parallel"), (0, ">= 1")])
def test_local_batch_size_rejects_indivisible(bad, message):
    mesh = parallel.make_mesh({"data": -1})
    with pytest.raises(ValueError, match=message):
        parallel.local_batch_size(bad, mesh)


def test_local_batch_size_without_mesh_needs_all_devices():
    with pytest.raises(ValueError, match="divisible by 8 devices, got 4"):
        parallel.local_batch_size(4)
    with pytest.raises(ValueError, match="must be an int"):
        parallel.local_batch_size(8.0)


def test_global_batch_places_rows_on_data_shards():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    local = {"x": np.arange(48, dtype=np.int32).reshape(16, 3), "y": np.ones(16, np.float32)}
    batch = parallel.global_batch(local, mesh)
    assert batch["x"].shape == (16, 3) and batch["y"].shape == (16,)
    assert batch["x"].sharding.spec == P(("data", "fsdp"))
    assert {s.data.shape for s in batch["x"].addressable_shards} == {(2, 3)}
    np.testing.assert_array_equal(parallel.to_host(batch)["x"], local["x"])


def test_global_batch_rejects_scalars_and_indivisible_leaves():
    mesh = parallel.make_mesh({"data": -1})
    with pytest.raises(ValueError, match=r"\['n'\] must have a leading batch dimension"):
        parallel.global_batch({"n": np.float32(1.0)}, mesh)
    with pytest.raises(ValueError, match=r"\['x'\].*global batch of 6.*8 data-parallel"):
        parallel.global_batch({"x": np.zeros((6, 2), np.float32)}, mesh)


# --- sharding rules ---------------------------------------------------------------------


class _Model(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(64, 8, rngs=rngs)
        self.layers = nnx.List([nnx.Linear(8, 32, rngs=rngs), nnx.Linear(32, 6, rngs=rngs)])


def _flat(tree):
    return {
        parallel.path_to_str(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(
            tree, is_leaf=lambda x: isinstance(x, P)
        )[0]
    }


def test_path_to_str_names_nnx_and_optax_leaves():
    model = _Model(nnx.Rngs(0))
    opt = optax.adam(1e-3).init(nnx.state(model, nnx.Param))
    assert set(_flat(nnx.state(model))) == {
        "embed/embedding",
        "layers/0/kernel",
        "layers/0/bias",
        "layers/1/kernel",
        "layers/1/bias",
    }
    assert "0/mu/layers/0/kernel" in _flat(opt) and "0/count" in _flat(opt)


def test_rules_first_match_wins_and_default_is_replicated():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    tree = {"a": {"kernel": np.zeros((8, 4))}, "b": {"kernel": np.zeros((4, 4))}, "c": np.zeros(3)}
    rules = [(r"^a/", P("fsdp")), (r"kernel$", P(None, "data"))]
    specs = _flat(parallel.partition_specs(tree, mesh, rules))
    assert specs == {"a/kernel": P("fsdp"), "b/kernel": P(None, "data"), "c": P()}


def test_rules_apply_to_eval_shape_output_and_optimizer_moments():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})

    def init():
        params = nnx.state(_Model(nnx.Rngs(0)), nnx.Param)
        return {"params": params, "opt": optax.adam(1e-3).init(params)}

    abstract = jax.eval_shape(init)
    assert isinstance(jax.tree.leaves(abstract)[0], jax.ShapeDtypeStruct)
    shardings = _flat(parallel.param_shardings(abstract, mesh, parallel.fsdp_rules(min_dim=8)))
    specs = {path: s.spec for path, s in shardings.items()}
    # embed 64x8: dim 0 (64) is the largest divisible by 4; kernel 8x32: dim 1; 32x6: dim 0.
    expected = {"embed/embedding": P("fsdp"), "layers/0/kernel": P(None, "fsdp")}
    expected["layers/1/kernel"] = P("fsdp")
    for path, spec in expected.items():
        assert specs[f"params/{path}"] == spec
        assert specs[f"opt/0/mu/{path}"] == spec
        assert specs[f"opt/0/nu/{path}"] == spec
    assert specs["params/layers/0/bias"] == P()
    assert specs["opt/0/count"] == P()

    # The engine's sharded init: jit with out_shardings, so no leaf ever exists whole.
    state_sh = parallel.param_shardings(abstract, mesh, parallel.fsdp_rules(min_dim=8))
    state = jax.jit(init, out_shardings=state_sh)()
    kernel = state["params"]["layers"][0]["kernel"][...]
    assert kernel.sharding.spec == P(None, "fsdp")
    assert {s.data.shape for s in kernel.addressable_shards} == {(8, 8)}


@pytest.mark.parametrize(
    "shape, min_dim, expected",
    [
        ((8, 64), 8, P(None, "fsdp")),
        ((64, 8), 8, P("fsdp")),
        ((16, 16), 8, P(None, "fsdp")),  # tie: the later (output) dimension
        ((6, 10), 4, None),  # nothing divisible by 4
        ((8, 64), 128, None),  # below the threshold
        ((64,), 8, None),  # vectors stay whole
        ((2, 12, 4), 4, P(None, "fsdp")),
    ],
)
def test_fsdp_spec_picks_largest_divisible_dimension(shape, min_dim, expected):
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    assert parallel.fsdp_spec(shape, mesh, "fsdp", min_dim) == expected


def test_fsdp_spec_over_two_axes_and_absent_axis():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    assert parallel.fsdp_spec((16, 4), mesh, ("data", "fsdp"), 8) == P(("data", "fsdp"))
    assert parallel.fsdp_spec((16, 4), parallel.make_mesh({"data": 8}), "fsdp", 8) is None


def test_rule_errors_name_the_leaf():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    tree = {"cell": {"w_hh": jnp.zeros((6, 8))}}
    with pytest.raises(ValueError, match=r"'cell/w_hh'.*dimension 0 of size 6 is not divisible"):
        parallel.param_shardings(tree, mesh, [("w_hh", P("fsdp"))])
    with pytest.raises(ValueError, match=r"'cell/w_hh'.*mesh axis 'model'"):
        parallel.param_shardings(tree, mesh, [("w_hh", P("model"))])
    with pytest.raises(ValueError, match=r"'cell/w_hh'.*has 2 dimensions.*names 3"):
        parallel.param_shardings(tree, mesh, [("w_hh", P(None, None, "data"))])
    with pytest.raises(ValueError, match="uses mesh axis 'fsdp' twice"):
        parallel.param_shardings(tree, mesh, [("w_hh", P(None, ("fsdp", "fsdp")))])
    with pytest.raises(ValueError, match="not a valid regex"):
        parallel.param_shardings(tree, mesh, [("(", P())])
    with pytest.raises(ValueError, match="must map to a PartitionSpec"):
        parallel.param_shardings(tree, mesh, [("w", "fsdp")])
    with pytest.raises(ValueError, match="min_dim must be a positive int"):
        parallel.fsdp_rules(min_dim=0)


def test_importing_parallel_pulls_in_no_training_dependencies():
    code = (
        "import sys, rnnlab.parallel; "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'orbax', 'grain', "
        "'ml_collections', 'torch') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
