"""Trained models out of the harness: a workdir (or an export of one) as a plain NNX model.

:func:`load` turns a run's workdir into the NNX model it trained, with its config and its
dataset description (vocabulary, sizes), on one device, without the data: the dataset
description comes from ``dataset_info.json``, which the engine writes next to
``config.json`` when a run starts. A run trained on a mesh (data parallel, FSDP, several
hosts) loads the same way: orbax reads the sharded checkpoint onto the one target device,
and the returned config's mesh is one device.

:func:`export` writes a self-contained directory (``config.json``, ``dataset_info.json``,
``params.npz``, ``export.json``) that :func:`load` reads with NumPy alone: no orbax, no
checkpoint directory, no dataset.

Example (see docs/interop.md for the whole walk-through)::

    from rnnlab.train import export
    model, info = export.load("workdirs/charlm")           # best checkpoint
    encode, decode = info.codec()                           # the run's vocabulary
    export.export("workdirs/charlm", "exported/charlm")     # then load("exported/charlm")
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from rnnlab import optim, parallel, tasks
from rnnlab.logs import absl_quiet
from rnnlab.train import config as cfg_lib
from rnnlab.train import files, integrity, publish
from rnnlab.train import state as state_lib

CONFIG_FILE = "config.json"
DATASET_INFO_FILE = "dataset_info.json"
PARAMS_FILE = "params.npz"
MANIFEST_FILE = "export.json"
FORMAT = "rnnlab-export/1"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What comes with a loaded model.

    Attributes:
      config: the run's config, with ``mesh`` set to one device and replicated sharding
        (what the returned model runs on).
      dataset: the dataset description (``task``, ``vocab_size``, ``vocab``, ``level``,
        ``input_features``, ...; see docs/data.md).
      step: the training step of the parameters.
      checkpoint: which checkpoint was read (``"best"``, ``"latest"`` or a step), or
        ``"export"`` for an exported directory.
      trained_mesh: the mesh the run was trained on (``config.json``'s ``mesh``).
      source: the directory it was read from.
    """

    config: cfg_lib.ConfigDict
    dataset: dict[str, Any]
    step: int
    checkpoint: str | int
    trained_mesh: dict[str, int]
    source: str

    @property
    def vocab(self) -> list[str] | None:
        """The vocabulary (characters or words) of a text dataset, else None."""
        vocab = self.dataset.get("vocab")
        return list(vocab) if vocab else None

    def codec(self) -> tuple[Callable[[str], np.ndarray], Callable[[Any], str]]:
        """``(encode, decode)`` between text and token ids, for text datasets."""
        from rnnlab.tasks.sampling import codec

        return codec(self.dataset)


def jsonable(obj: Any) -> Any:
    """``obj`` with NumPy arrays and scalars turned into lists and numbers, tuples into lists."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic) or hasattr(obj, "tolist"):
        return np.asarray(obj).tolist()
    return obj


def write_dataset_info(workdir: str, info: Mapping[str, Any] | None = None) -> str:
    """Writes ``<workdir>/dataset_info.json``; returns its path.

    The engine calls it with the run's info at start. For a workdir from before it did,
    call it without ``info``: the description is then computed once from the data named by
    the workdir's ``config.json`` (the only time the data is needed).
    """
    if info is None:
        from rnnlab.train import inputs

        config = cfg_lib.from_dict(files.read_json(files.join(workdir, CONFIG_FILE)))
        info = inputs.dataset_info(inputs.default_source(), config)
    path = files.join(workdir, DATASET_INFO_FILE)
    files.write_json(path, jsonable(info))
    return path


def _read_json(directory: str, name: str, hint: str) -> Any:
    path = files.join(directory, name)
    if not files.exists(path):
        raise FileNotFoundError(f"{path} does not exist: {hint}")
    return files.read_json(path)


def _one_device_config(saved: dict[str, Any]) -> tuple[cfg_lib.ConfigDict, dict[str, int]]:
    """The saved config on one device: ``mesh = {"data": 1}``, replicated parameters."""
    trained_mesh = dict(saved.get("mesh") or {})
    data = dict(saved, mesh={"data": 1})
    data["sharding"] = dict(saved.get("sharding") or {}, rules="replicated")
    return cfg_lib.from_dict(data), trained_mesh


def _graphdef(config: cfg_lib.ConfigDict, dataset: Mapping[str, Any]):
    """The model's structure and abstract ``(params, rest)`` pure dicts (nothing allocated)."""
    model = state_lib.abstract_model(config, dataset)
    return state_lib.split_model(model)


def _merge(graphdef, params, rest, device) -> nnx.Module:
    params, rest = jax.device_put((params, rest), device)
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    return model


def _load_workdir(workdir: str, which: str | int, device) -> tuple[nnx.Module, ModelInfo]:
    from rnnlab.train import checkpoint as ckpt_lib  # orbax: only for workdirs
    from rnnlab.train import readers

    saved = _read_json(workdir, CONFIG_FILE, "not a run's workdir (no config.json)")
    dataset = _read_json(
        workdir,
        DATASET_INFO_FILE,
        "the run started before the engine recorded its dataset; write it once with "
        "rnnlab.train.export.write_dataset_info(workdir) (reads the data this one time)",
    )
    config, trained_mesh = _one_device_config(saved)
    config = cfg_lib.resolved(config)
    task = tasks.get(dataset["task"])
    es = config.train.early_stopping
    best_metric = es.metric or task.best_metric
    default_mode = task.best_mode if best_metric == task.best_metric else "min"
    checkpoints = readers.opened(
        lambda: ckpt_lib.Checkpoints(
            files.join(workdir, "checkpoints"),
            best_metric=best_metric,
            best_mode=es.mode or default_mode,
            async_save=False,
            read_only=True,
        )
    )
    try:
        tx = optim.make(**config.optim.to_dict())
        init = state_lib.initializer(config, dataset, tx, int(config.train.batch_size))
        sharding = jax.sharding.SingleDeviceSharding(device)
        target = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
            jax.eval_shape(init),
        )

        def same_dataset(step: int, extra: dict[str, Any]) -> None:
            where = f"checkpoint {step} in {workdir}"
            integrity.check_dataset(extra.get("dataset"), dataset, where)

        # A run training in the workdir may rotate the chosen step away while it is read.
        step, (state, _) = readers.restore(
            checkpoints,
            which,
            lambda step: checkpoints.restore(target, step, precheck=same_dataset),
            note=lambda text: print(f"rnnlab: note: {text}", file=sys.stderr, flush=True),
        )
    finally:
        checkpoints.close()
    # nt_asgd / EMA runs evaluate (and rank "best") with the weight average: so does this.
    params = optim.eval_params(state.opt_state, state.params)
    graphdef, _, _ = _graphdef(config, dataset)
    info = ModelInfo(config, dataset, step, which, trained_mesh, str(workdir))
    return _merge(graphdef, params, state.rest, device), info


def _flat(tree: Any) -> tuple[list[str], list[Any], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [parallel.path_to_str(p) for p, _ in leaves], [x for _, x in leaves], treedef


def _load_export(directory: str, device) -> tuple[nnx.Module, ModelInfo]:
    manifest = _read_json(directory, MANIFEST_FILE, "not an rnnlab export")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{directory}: export format {manifest.get('format')!r}, want {FORMAT}")
    saved = _read_json(directory, CONFIG_FILE, "the export is incomplete")
    dataset = _read_json(directory, DATASET_INFO_FILE, "the export is incomplete")
    config, _ = _one_device_config(saved)
    graphdef, params, rest = _graphdef(config, dataset)
    with files.path(files.join(directory, PARAMS_FILE)).open("rb") as f, np.load(f) as arrays:
        filled = []
        for group, tree in (("params", params), ("rest", rest)):
            keys, leaves, treedef = _flat(tree)
            values = []
            for key, leaf in zip(keys, leaves, strict=True):
                name = f"{group}/{key}"
                if name not in arrays:
                    raise ValueError(f"{directory}/{PARAMS_FILE} lacks {name!r}")
                value = arrays[name]
                dtype = np.dtype(manifest["dtypes"][name])
                value = value.view(dtype) if value.dtype != dtype else value
                if value.shape != leaf.shape or value.dtype != leaf.dtype:
                    raise ValueError(
                        f"{name}: the export holds {value.dtype}{list(value.shape)}, the "
                        f"config builds {leaf.dtype}{list(leaf.shape)}"
                    )
                values.append(value)
            filled.append(jax.tree_util.tree_unflatten(treedef, values))
    info = ModelInfo(
        config,
        dataset,
        int(manifest["step"]),
        "export",
        dict(manifest.get("trained_mesh") or {}),
        str(directory),
    )
    return _merge(graphdef, *filled, device), info


def load(path: str, checkpoint: str | int = "best", *, device=None) -> tuple[nnx.Module, ModelInfo]:
    """The trained NNX model of a workdir or of an :func:`export` directory, and its info.

    Args:
      path: a run's workdir (``config.json``, ``dataset_info.json``, ``checkpoints/``) or
        a directory written by :func:`export`.
      checkpoint: for a workdir, ``"best"`` (by the run's early-stopping metric; the latest
        when none is ranked), ``"latest"`` or a step number.
      device: where the parameters go (default: this process's first local device).

    Returns:
      ``(model, info)``: the model in evaluation mode (``model.train()`` to fine-tune),
      with the weight average for ``nt_asgd`` and EMA runs, and a :class:`ModelInfo`.
    """
    device = device if device is not None else jax.local_devices()[0]
    if files.exists(files.join(path, MANIFEST_FILE)):
        return _load_export(path, device)
    with absl_quiet():  # orbax's "Given directory is read only" (rnnlab.logs)
        return _load_workdir(path, checkpoint, device)


def export(workdir: str, out: str, checkpoint: str | int = "best") -> str:
    """Writes a self-contained copy of a trained model to the directory ``out``.

    ``out`` receives ``config.json`` (as in the workdir), ``dataset_info.json``,
    ``params.npz`` (every parameter and model variable, named by its path, e.g.
    ``params/layers/0/cell/kernel_ih``) and ``export.json`` (format, step, dtypes, the
    trained mesh). :func:`load` reads it in a fresh process with NumPy, without the
    checkpoints or the data. The directory is written as a temporary sibling and renamed
    into place (:mod:`rnnlab.train.publish`): an earlier export at ``out`` stays whole
    until the new one is complete. ``out`` must be new, empty or an earlier export (it is
    replaced whole, so any other folder is refused with a FileExistsError). Returns ``out``.
    """
    out_path = files.path(out)
    if out_path.is_dir() and any(True for _ in out_path.iterdir()):
        if not files.exists(files.join(out, MANIFEST_FILE)):
            raise FileExistsError(
                f"{out} exists and is not an rnnlab export (no {MANIFEST_FILE}); an export "
                "replaces its directory whole: choose a new or empty one"
            )
    model, info = load(workdir, checkpoint)
    _, params, rest = state_lib.split_model(model)
    arrays, dtypes = {}, {}
    for group, tree in (("params", params), ("rest", rest)):
        keys, leaves, _ = _flat(tree)
        for key, leaf in zip(keys, leaves, strict=True):
            value = np.asarray(jax.device_get(leaf))
            dtypes[f"{group}/{key}"] = value.dtype.name
            # bfloat16 and other ml_dtypes are stored as raw bits and viewed back on load.
            native = value.dtype.kind in "biufc" and value.dtype.name in np.sctypeDict
            arrays[f"{group}/{key}"] = value if native else value.view(f"u{value.itemsize}")
    manifest = {
        "format": FORMAT,
        "step": info.step,
        "checkpoint": info.checkpoint,
        "trained_mesh": info.trained_mesh,
        "dtypes": dtypes,
        "source": str(workdir),
    }
    config = files.read_json(files.join(workdir, CONFIG_FILE))

    def write(tmp: str) -> None:
        with files.path(files.join(tmp, PARAMS_FILE)).open("wb") as f:
            np.savez(f, **arrays)
        files.write_json(files.join(tmp, CONFIG_FILE), config)
        files.write_json(files.join(tmp, DATASET_INFO_FILE), jsonable(info.dataset))
        files.write_text(files.join(tmp, MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n")

    publish.directory(out, write, manifest=MANIFEST_FILE)
    return out
