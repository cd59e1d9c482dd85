"""Trained models leave the harness: a sharded run loads on one device without its data.

A tiny run trains under FSDP on two simulated devices; the reference is that process's own
restored parameters (gathered to the host by the engine). A fresh one-device process with
no data directory then loads the workdir, exports it, moves the workdir away and loads the
export alone.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

TRAIN = """
import jax, numpy as np
from rnnlab import optim, parallel
from rnnlab.train import config as cfg_lib
from rnnlab.train.loop import Run, train
assert jax.device_count() == 2
overrides = ["train.steps=3", "mesh.fsdp=2", "sharding.rules=fsdp", "sharding.fsdp_min_dim=1"]
config = cfg_lib.override(cfg_lib.load("experiments/faults.py"), overrides)
train(config, WORKDIR)
run = Run(config, WORKDIR)
state, _ = run.restore(run.checkpoints.best_step() or run.checkpoints.latest_step())
kernel = state.params["rnn"]["layers"][0]["cell"]["kernel_hh"]
assert len(kernel.sharding.device_set) == 2 and not kernel.sharding.is_fully_replicated
params = parallel.to_host(optim.eval_params(state.opt_state, state.params))
flat = jax.tree_util.tree_flatten_with_path(params)[0]
np.savez(WORKDIR + "/../reference.npz", **{parallel.path_to_str(p): np.asarray(x) for p, x in flat})
"""

# Loads the workdir with no data anywhere, checks it against the training process's
# parameters and exports it; then moves the workdir (checkpoints included) away and loads
# the export alone. One process for both loads: each reads only files, and the parameters
# are checked against the reference the training process wrote.
LOAD = """
import os
import jax, numpy as np
from flax import nnx
from rnnlab import optim, parallel
from rnnlab.train import export
assert jax.device_count() == 1

def check(source):
    model, info = export.load(source)
    ref = np.load(REFERENCE)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    flat = {parallel.path_to_str(p): np.asarray(x) for p, x in leaves}
    assert sorted(flat) == sorted(ref.files), (sorted(flat), ref.files)
    for k in flat:
        np.testing.assert_array_equal(flat[k], ref[k], err_msg=k)
    assert all(len(x.devices()) == 1 for x in jax.tree.leaves(params))
    encode, decode = info.codec()
    assert decode(encode("Anne Elliot")) == "Anne Elliot"
    logits, _ = model({"inputs": jax.numpy.asarray(encode("Anne"))[None]})
    report = {"step": info.step, "checkpoint": info.checkpoint,
              "mesh": info.config.mesh.to_dict(), "trained_mesh": info.trained_mesh,
              "vocab_size": len(info.vocab), "logits": list(logits.shape),
              "rules": info.config.sharding.rules}
    print(json.dumps(report), flush=True)

check(WORKDIR)
export.export(WORKDIR, EXPORTED)
os.rename(WORKDIR, MOVED)
check(EXPORTED)
"""


def run_python(code, devices, env_extra, **subs):
    env = dict(os.environ)
    env.update(env_extra)
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    header = "import json\n" + "".join(f"{k} = {v!r}\n" for k, v in subs.items())
    out = subprocess.run(
        [sys.executable, "-c", header + textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


@pytest.mark.slow
def test_fsdp_run_loads_on_one_device_without_data_and_exports(tmp_path):
    workdir = tmp_path / "run"
    run_python(TRAIN, 2, {}, WORKDIR=str(workdir))
    info = json.loads((workdir / "dataset_info.json").read_text())
    assert info["task"] == "lm" and len(info["vocab"]) == info["vocab_size"]

    # No data anywhere: the dataset description comes from the workdir.
    no_data = {"RNNLAB_DATA_DIR": str(tmp_path / "no-data"), "TFDS_DATA_DIR": str(tmp_path)}
    exported, moved = tmp_path / "exported", tmp_path / "moved"
    paths = dict(WORKDIR=str(workdir), EXPORTED=str(exported), MOVED=str(moved))
    out = run_python(LOAD, 1, no_data, REFERENCE=str(tmp_path / "reference.npz"), **paths)
    from_workdir, from_export = (json.loads(x) for x in out.strip().splitlines()[-2:])
    assert from_workdir["trained_mesh"] == {"data": -1, "fsdp": 2}
    assert from_workdir["mesh"] == {"data": 1} and from_workdir["rules"] == "replicated"
    assert from_workdir["step"] == 3 and from_workdir["checkpoint"] == "best"
    assert from_workdir["logits"] == [1, 4, from_workdir["vocab_size"]]

    # The export stands alone: the workdir (checkpoints included) was gone when it loaded.
    assert not workdir.exists() and (moved / "checkpoints").is_dir()
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.json",
        "dataset_info.json",
        "export.json",
        "params.npz",
    ]
    # The same model from the export alone: step, meshes, rules, vocabulary, output shape.
    assert from_export == {**from_workdir, "checkpoint": "export"}


def test_workdir_without_dataset_info_names_the_fix(tmp_path):
    from rnnlab.train import config as cfg_lib
    from rnnlab.train import export

    (tmp_path / "config.json").write_text(json.dumps(cfg_lib.to_dict(cfg_lib.base_config())))
    with pytest.raises(FileNotFoundError, match="write_dataset_info"):
        export.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        export.load(str(tmp_path / "elsewhere"))


def test_export_of_a_bad_format_is_refused(tmp_path):
    from rnnlab.train import export

    (tmp_path / "export.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(ValueError, match="export format 'other/9'"):
        export.load(str(tmp_path))


def test_jsonable_turns_numpy_into_plain_json():
    import numpy as np

    from rnnlab.train.export import jsonable

    out = jsonable({"a": np.arange(3), "b": (np.float32(1.5), "x"), 3: {"c": np.int64(2)}})
    assert json.loads(json.dumps(out)) == {"a": [0, 1, 2], "b": [1.5, "x"], "3": {"c": 2}}
