"""The trainer's own jitted train step on different meshes, same global batch, same numbers.

A run is built with :class:`rnnlab.train.Run` from a config whose ``mesh`` and ``sharding``
keys are set the way a user sets them on the command line (``mesh.fsdp=4``,
``sharding.rules=fsdp``), and stepped with ``Run.jit_train_step()``, the function the
training loop runs. The one-device run is the reference: the 8-device data mesh and the
2x4 data/fsdp mesh (parameters and Adam moments split over ``fsdp``) must give the same
loss, metrics, gradients (Adam's first moment after one step is ``(1 - b1) g``), parameters,
model variables and carried state.

Batch normalisation (the recurrent BN-LSTM of Cooijmans et al., 2016) couples the examples
of a batch; the test checks that per-device statistics would have been caught: they give a
different loss, while the sharded step gives the global one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import FakeSource

from rnnlab import parallel
from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train import sharding as sharding_lib
from rnnlab.train.step import apply_model

B1 = 0.9
MESHES = {
    "one_device": ([], 1),
    "data8": ([], 8),
    "data2_fsdp4": (
        ["mesh.data=2", "mesh.fsdp=4", "sharding.rules=fsdp", "sharding.fsdp_min_dim=16"],
        8,
    ),
}


def _config(dataset, model, overrides, batch_size=16):
    c = cfg_lib.base_config()
    c.data.name = dataset
    c.data.seq_len = 6
    c.model.update(model)
    c.optim.update({"optimizer": "adam", "lr": 1e-2, "b1": B1, "clip_norm": 0.0})
    c.train.update({"steps": 2, "batch_size": batch_size})
    return cfg_lib.override(cfg_lib.lock(c), overrides)


def _batches(config, num):
    it = FakeSource().load(
        config.data, split="train", batch_size=int(config.train.batch_size), seed=0
    )
    return [next(it) for _ in range(num)]


def _steps(config, devices, batches, workdir):
    """Host copies of the state after each step, the metrics, and the run."""
    run = loop.Run(config, str(workdir), source=FakeSource(), devices=devices)
    state = run.initial_state()
    step = run.jit_train_step()
    states, metrics = [], []
    for batch in batches:
        state, m = step(state, parallel.global_batch(batch, run.mesh))
        states.append(parallel.to_host(state))
        metrics.append(parallel.to_host(m))
    return states, metrics, run, state


def _leaves(tree):
    return {
        parallel.path_to_str(path): np.asarray(x)
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def _first_moments(opt_state):
    """Adam's ``mu`` leaves by parameter path (after one step: ``(1 - b1) * gradient``)."""
    return {k: v for k, v in _leaves(opt_state).items() if "/mu/" in f"/{k}/"}


def _assert_same(ref, got, what, rtol=2e-5, atol=2e-6):
    ref, got = _leaves(ref), _leaves(got)
    assert ref.keys() == got.keys(), what
    for key in ref:
        np.testing.assert_allclose(
            got[key], ref[key], rtol=rtol, atol=atol, err_msg=f"{what} {key}"
        )


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    """Two steps of a stateful LSTM language model on each mesh."""
    model = {"embed_features": 8, "hidden_features": 16, "num_layers": 1}
    results = {}
    for name, (overrides, num_devices) in MESHES.items():
        config = _config("fake_lm", model, overrides)
        batches = _batches(config, 2)
        workdir = tmp_path_factory.mktemp(name)
        results[name] = _steps(config, jax.devices()[:num_devices], batches, workdir)
    return results


@pytest.mark.parametrize("name", ["data8", "data2_fsdp4"])
def test_language_model_step_is_the_same_on_every_mesh(lm_runs, name):
    ref_states, ref_metrics, _, _ = lm_runs["one_device"]
    states, metrics, run, _ = lm_runs[name]
    assert run.mesh.devices.size == 8
    for i in range(2):
        for key in ("loss", "accuracy", "grad_norm"):
            np.testing.assert_allclose(metrics[i][key], ref_metrics[i][key], rtol=2e-5)
        _assert_same(ref_states[i], states[i], f"{name} step {i + 1}")
    # Gradients of the first step, through Adam's first moment.
    grads_ref = _first_moments(ref_states[0].opt_state)
    grads = _first_moments(states[0].opt_state)
    assert len(grads) == len(jax.tree.leaves(ref_states[0].params)) >= 6
    for key, mu in grads_ref.items():
        assert np.abs(mu).max() > 0, key
        np.testing.assert_allclose(grads[key] / (1 - B1), mu / (1 - B1), rtol=2e-5, atol=1e-7)
    # The carried LSTM state differs between rows, so a row mix-up would show.
    carry = jax.tree.leaves(ref_states[1].carry)[0]
    assert np.abs(carry[0] - carry[1]).max() > 1e-3


def test_fsdp_rules_split_parameters_and_moments(lm_runs):
    _, _, run, state = lm_runs["data2_fsdp4"]
    assert dict(run.mesh.shape) == {"data": 2, "fsdp": 4}
    specs = {
        parallel.path_to_str(p): x.sharding.spec
        for p, x in jax.tree_util.tree_leaves_with_path(state)
    }
    split = {k for k, spec in specs.items() if any(e is not None for e in spec)}
    # kernels with a dimension >= fsdp_min_dim = 16 are split, their Adam moments alike
    kernels = {k for k in split if k.startswith("params/") and "kernel" in k}
    assert len(kernels) >= 3, split
    for k in kernels:
        assert "fsdp" in str(specs[k])
        moment = next(m for m in specs if m.endswith(k[len("params/") :]) and "/mu/" in m)
        assert specs[moment] == specs[k], moment
    # the embedding (8 x 8) and the biases stay whole; the carry is split over the batch
    assert not any(e for e in specs["params/embed/embedding"])
    carry_specs = [s for k, s in specs.items() if k.startswith("carry/")]
    assert carry_specs and all(s[0] == ("data", "fsdp") for s in carry_specs)
    line = sharding_lib.describe(run.abstract, run.shardings)
    assert "mesh data=2 x fsdp=4" in line and f"{len(split)} of" in line
    # the replicated data mesh splits nothing but the carry
    _, _, run8, state8 = lm_runs["data8"]
    assert all(not any(x.sharding.spec) for x in jax.tree.leaves(state8.replace(carry=None)))


def test_batch_norm_statistics_are_global(tmp_path):
    """BN-LSTM classifier: 1 device and 8 devices agree; per-device statistics would not."""
    model = {"name": "classifier", "cell": "bn_lstm", "hidden_features": 8}
    results = {}
    for name in ("one_device", "data8"):
        overrides, num_devices = MESHES[name]
        config = _config("fake_classification", model, overrides)
        batches = _batches(config, 1)
        results[name] = _steps(config, jax.devices()[:num_devices], batches, tmp_path / name)
    (ref_states, ref_metrics, run, _), (states, metrics, _, _) = (
        results["one_device"],
        results["data8"],
    )
    np.testing.assert_allclose(metrics[0]["loss"], ref_metrics[0]["loss"], rtol=2e-5)
    np.testing.assert_allclose(metrics[0]["accuracy"], ref_metrics[0]["accuracy"], rtol=2e-5)
    _assert_same(ref_states[0], states[0], "bn_lstm classifier")
    assert any("gamma_x" in k for k in _first_moments(ref_states[0].opt_state))

    # The loss the same parameters give when each device normalises its own 2 rows.
    init = run.initial_state()
    params, rest = jax.tree.map(jnp.asarray, parallel.to_host((init.params, init.rest)))

    @jax.jit
    def loss(part):
        outputs, aux, _ = apply_model(
            run.graphdef, params, rest, part, train=True, key=init.key(), carry=None
        )
        s, w = run.task.metrics(outputs, aux, part)["loss"]
        return s / w

    batch = jax.tree.map(jnp.asarray, batches[0])
    per_device = [
        float(loss({k: v[2 * d : 2 * d + 2] for k, v in batch.items()})) for d in range(8)
    ]
    # Per-device statistics move the loss by far more than the 2e-5 the meshes agree to.
    assert abs(np.mean(per_device) - ref_metrics[0]["loss"]) > 1e-4 * ref_metrics[0]["loss"]


def test_mesh_and_sharding_from_command_line_overrides():
    config = _config("fake_lm", {}, ["mesh.fsdp=2", "mesh.model=1", "sharding.rules=fsdp"])
    # ml_collections sorts keys; the trainer lays the axes out data, fsdp, then the rest
    assert sharding_lib.mesh_axes(config.mesh) == [("data", -1), ("fsdp", 2), ("model", 1)]
    mesh = sharding_lib.mesh_from_config(config)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "model": 1}
    assert len(sharding_lib.rules(config, mesh)) == 1
    with pytest.raises(cfg_lib.ConfigError, match="'mesh'.*does not divide"):
        sharding_lib.mesh_from_config(_config("fake_lm", {}, ["mesh.fsdp=3"]))
    with pytest.raises(cfg_lib.ConfigError, match="mesh.fsdp.*positive int size or -1"):
        sharding_lib.mesh_axes(_config("fake_lm", {}, ["mesh.fsdp=0"]).mesh)
    with pytest.raises(cfg_lib.ConfigError, match="mesh.fsdp"):
        cfg_lib.override(cfg_lib.base_config(), ["mesh.fsdp=two"])
    with pytest.raises(cfg_lib.ConfigError, match="sharding.fsdp_axis.*lacks"):
        sharding_lib.rules(_config("fake_lm", {}, ["sharding.rules=fsdp"]), mesh_of({"data": 8}))
    with pytest.raises(cfg_lib.ConfigError, match="sharding.rules.*'zero'"):
        cfg_lib.validate(_config("fake_lm", {}, ["sharding.rules=zero"]))
    with pytest.raises(cfg_lib.ConfigError, match="no such key"):
        cfg_lib.override(cfg_lib.base_config(), ["sharding.min_dim=3"])
    # a saved config.json keeps the added axis
    again = cfg_lib.from_dict(cfg_lib.to_dict(config))
    assert sharding_lib.mesh_axes(again.mesh) == [("data", -1), ("fsdp", 2), ("model", 1)]


def mesh_of(axes):
    return parallel.make_mesh(axes)
