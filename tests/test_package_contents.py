"""The package holds library code only: the tests' fake data and the benchmarks' Flax peer
live beside it, a mesh is made in one place, and the cache of run initializers is bounded."""

import ast
import gc
import weakref
from pathlib import Path

import optax

from rnnlab.train import config as cfg_lib
from rnnlab.train import state as state_lib

PACKAGE = Path(__file__).resolve().parents[1] / "rnnlab"


def _trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent).as_posix(), ast.parse(path.read_text())


def test_make_mesh_is_defined_once_in_parallel_mesh():
    defs = [
        name
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "make_mesh"
    ]
    assert defs == ["rnnlab/parallel/mesh.py"]


def test_fake_data_and_the_flax_peer_are_not_in_the_package():
    classes = {
        node.name: name
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    assert "FakeSource" not in classes and "FlaxClassifier" not in classes
    registered = [
        node.args[0].value
        for _, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "register"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert "classifier" in registered  # the scan sees the core's registrations
    assert "flax_classifier" not in registered


def test_run_initializers_are_cached_but_do_not_keep_every_config_alive():
    tx = optax.sgd(0.1)
    info = {"task": "classification", "num_classes": 4, "input_features": 3}
    configs = []
    for seed in range(3 * state_lib.MAX_INITIALIZERS):
        config = cfg_lib.base_config()
        config.seed = 1000 + seed
        configs.append(config)
    first = state_lib.initializer(configs[0], info, tx, 8)
    # Equal arguments give the same function (so jit does not compile the init again).
    assert state_lib.initializer(configs[0], info, tx, 8) is first
    for config in configs[1:]:
        state_lib.initializer(config, info, tx, 8)
    refs = [weakref.ref(c) for c in configs]
    del configs, config, first
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= state_lib.MAX_INITIALIZERS
