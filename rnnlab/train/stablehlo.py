"""A trained model as serialised StableHLO (``jax.export``), to run without rnnlab.

:func:`export_stablehlo` writes to a directory:

- ``forward.stablehlo``: the model's forward function with its parameters baked in, batch
  size symbolic (``b``) and, where the model allows, time too (``t``);
- ``step.stablehlo`` (language models): one decoding step, ``(tokens [b], carry...) ->
  (logits [b, V], carry...)``, so a caller can stream generation;
- translation: ``encode.stablehlo``, ``decode_step.stablehlo`` (one decoder step with its
  state) and ``translate.stablehlo`` (greedy decoding as one function);
- forecasting: ``forward.stablehlo``, the point forecast and the head's quantiles or scale;
- ``signature.json``: each function's input and output names, shapes (``"b"``/``"t"`` for
  the symbolic dimensions), dtypes, the platforms the artifact carries, and what a caller
  needs around it: the vocabularies, class names, special token ids, standardisation
  statistics, horizon and quantile levels.

The functions by task are in :mod:`rnnlab.train.stablehlo_functions`.

A caller needs only JAX::

    exp = jax.export.deserialize(open("forward.stablehlo", "rb").read())
    logits, = exp.call(inputs, seq_lengths)

The artifact is lowered for every platform of ``platforms`` (default cpu, cuda and tpu)
that lowering allows on this machine; ``signature.json`` lists those each function carries
(``exported.platforms`` of its file) and, as ``platforms``, those all of them carry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import export as jex

from rnnlab import target
from rnnlab.train import stablehlo_functions

PLATFORMS = ("cpu", "cuda", "tpu")
FORMAT = "rnnlab-stablehlo/1"


def _spec(shape: Sequence[Any], dtype: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))


def _describe(names: Sequence[str], avals: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"name": n, "shape": [d if isinstance(d, int) else str(d) for d in a.shape],
         "dtype": str(a.dtype)}
        for n, a in zip(names, avals, strict=True)
    ]  # fmt: skip


def _lower(fn: Callable, specs: Sequence[Any], platforms: Sequence[str]):
    """``(Exported, platforms)`` lowered for every platform of ``platforms`` that lowers."""
    ok, errors = [], {}
    # Traced without rnnlab-kernels' custom calls: the artifact runs with JAX alone.
    with target.exporting():
        for p in platforms:
            try:
                jex.export(jax.jit(fn), platforms=(p,))(*specs)
                ok.append(p)
            except Exception as e:  # noqa: BLE001 - lowering errors come in many types
                errors[p] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        if not ok:
            raise ValueError(f"the model lowers on none of {list(platforms)}: {errors}")
        return jex.export(jax.jit(fn), platforms=tuple(ok))(*specs), ok, errors


def _avals(specs, scope_dims: dict[str, Any]):
    out = []
    for shape, dtype in specs:
        out.append(_spec([scope_dims.get(d, d) if isinstance(d, str) else d for d in shape], dtype))
    return out


def export_stablehlo(
    workdir: str,
    out: str,
    checkpoint: str | int = "best",
    platforms: Sequence[str] = PLATFORMS,
) -> dict[str, Any]:
    """Writes the StableHLO artifacts of the run in ``workdir`` to ``out`` (module
    docstring); returns the signature written to ``signature.json``."""
    from rnnlab.train import export as export_lib

    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown:
        raise ValueError(f"platforms must be among {list(PLATFORMS)}, received {unknown}")
    model, minfo = export_lib.load(workdir, checkpoint)
    info = minfo.dataset
    blobs, signature = (
        {},
        {
            "format": FORMAT,
            "task": info["task"],
            "step": minfo.step,
            "functions": {},
        },
    )
    shortest = stablehlo_functions.min_time(model, info)
    # The model's shortest input bounds t, so that a check such as "does the window hold a
    # season" is decided at export time.
    constraints = (f"t >= {shortest}",) if shortest > 1 else ()
    for f in stablehlo_functions.functions(model, info):
        name, fn, in_names, specs, out_names = f.name, f.fn, f.inputs, f.specs, f.outputs
        b, t = jex.symbolic_shape("b, t", constraints=constraints)
        time = "symbolic"
        try:
            exported, ok, errors = _lower(fn, _avals(specs(t), {"b": b}), platforms)
        except ValueError:
            # A model whose length must be static (e.g. a fixed-length input) keeps its
            # trained length; the batch stays symbolic.
            (b,) = jex.symbolic_shape("b")
            fixed = int(info["seq_len"])
            exported, ok, errors = _lower(fn, _avals(specs(fixed), {"b": b}), platforms)
            time = f"fixed {fixed}"
        blobs[name] = exported.serialize()
        signature["functions"][name] = {
            "file": f"{name}.stablehlo",
            "inputs": _describe(in_names, exported.in_avals),
            "outputs": _describe(out_names, exported.out_avals),
            "time": time,
            "min_time": shortest if time == "symbolic" else None,
            "platforms": [p.lower() for p in exported.platforms],
            "not_lowered": errors,
        }
    carried = [set(fn["platforms"]) for fn in signature["functions"].values()]
    signature["platforms"] = [p for p in PLATFORMS if all(p in c for c in carried)]
    signature.update(_context(model, info, minfo.config))
    os.makedirs(out, exist_ok=True)
    for name, blob in blobs.items():
        _atomic(os.path.join(out, f"{name}.stablehlo"), bytes(blob))
    text = json.dumps(signature, indent=2) + "\n"
    _atomic(os.path.join(out, "signature.json"), text.encode())
    return signature


CONTEXT_KEYS = (
    "class_names", "vocab", "blank_id", "num_classes", "output_features", "input_features",
    "source_vocab", "target_vocab", "tokenizer", "tokenizer_model", "pad_id", "unk_id",
    "bos_id", "eos_id", "max_source_len", "max_target_len", "horizon", "seq_len", "mean",
    "std", "columns", "seasonal_period",
)  # fmt: skip


def _context(model: nnx.Module, info: dict[str, Any], config) -> dict[str, Any]:
    """What a caller needs around the functions: vocabularies, ids, sizes, statistics."""
    from rnnlab.data.vocab import WORD_PATTERN
    from rnnlab.train import export as export_lib

    out = {k: export_lib.jsonable(info[k]) for k in CONTEXT_KEYS if info.get(k) is not None}
    if info["task"] == "seq2seq":
        # The decoder's first input (a dedicated start row when the model has one).
        out["bos_id"] = int(model.bos_id)
        if info.get("tokenizer", "word") == "word":
            out["word_pattern"] = WORD_PATTERN  # source words: re.findall(pattern, text)
    if info["task"] == "forecast":
        out["head"] = model.head_type
        if model.head_type == "quantile":
            out["quantile_levels"] = list(model.quantiles)
        out["units"] = "standardised: (x - mean) / std per series, forecasts likewise"
    elif "mean" in out:
        standardize = bool(config.data.get("standardize") or False)
        out["standardize"] = standardize  # inputs are (x - mean) / std when true
    return out


def _atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
