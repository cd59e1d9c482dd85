"""A trained model as serialised StableHLO (``jax.export``), to run without rnnlab.

:func:`export_stablehlo` writes to a directory:

- ``forward.stablehlo``: the model's forward function with its parameters baked in, batch
  size symbolic (``b``) and, where the model allows, time too (``t``);
- ``step.stablehlo`` (language models): one decoding step, ``(tokens [b], carry...) ->
  (logits [b, V], carry...)``, so a caller can stream generation;
- ``signature.json``: each function's input and output names, shapes (``"b"``/``"t"`` for
  the symbolic dimensions), dtypes, the platforms the artifact carries, and the
  vocabulary or class names.

A caller needs only JAX::

    exp = jax.export.deserialize(open("forward.stablehlo", "rb").read())
    logits, = exp.call(inputs, seq_lengths)

The artifact is lowered for every platform of ``platforms`` (default cpu, cuda and tpu)
that lowering allows on this machine; ``signature.json`` lists those it carries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import export as jex

from rnnlab import target

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


def _functions(model: nnx.Module, info: dict[str, Any]):
    """Per exported function: (name, fn(*arrays), input names, specs for a time dim ``t``
    (a callable of ``t``), output names)."""
    graphdef, state = nnx.split(model)
    task = info["task"]
    b = "b"

    def run(batch):
        return nnx.merge(graphdef, state)(batch, train=False)

    if task in ("classification", "regression", "tagging"):
        features = int(info["input_features"])

        def forward(inputs, seq_lengths):
            return (run({"inputs": inputs, "seq_lengths": seq_lengths})[0],)

        specs = lambda t: (((b, t, features), np.float32), ((b,), np.int32))  # noqa: E731
        return [("forward", forward, ("inputs", "seq_lengths"), specs, ("outputs",))]
    if task == "ctc":
        features = int(info["input_features"])

        def forward(inputs, input_lengths):
            logits, aux = run({"inputs": inputs, "input_lengths": input_lengths})
            return logits, aux["logit_lengths"]

        specs = lambda t: (((b, t, features), np.float32), ((b,), np.int32))  # noqa: E731
        return [
            ("forward", forward, ("inputs", "input_lengths"), specs, ("logits", "logit_lengths"))
        ]
    if task == "lm":
        merged = nnx.merge(graphdef, state)
        carry0 = jax.eval_shape(lambda: merged.init_carry(1))
        leaves, treedef = jax.tree.flatten(carry0)
        carry_names = tuple(f"carry_{i}" for i in range(len(leaves)))

        def forward(inputs):
            logits, aux = run({"inputs": inputs})
            return (logits, *jax.tree.leaves(aux["carry"]))

        def step(tokens, *carry):
            model = nnx.merge(graphdef, state)
            logits, new = model.decode_step(tokens, jax.tree.unflatten(treedef, list(carry)))
            return (logits, *jax.tree.leaves(new))

        carry_specs = tuple(((b, *x.shape[1:]), x.dtype) for x in leaves)
        return [
            ("forward", forward, ("inputs",), lambda t: (((b, t), np.int32),),
             ("logits", *carry_names)),
            ("step", step, ("tokens", *carry_names), lambda t: (((b,), np.int32), *carry_specs),
             ("logits", *carry_names)),
        ]  # fmt: skip
    raise ValueError(
        f"stablehlo export covers the tasks classification, regression, tagging, ctc and lm; "
        f"this run's "
        f"task is {task!r} (use --format params)"
    )


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
    for name, fn, in_names, specs, out_names in _functions(model, info):
        b, t = jex.symbolic_shape("b, t")
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
            "platforms": ok,
            "not_lowered": errors,
        }
    for key in ("class_names", "vocab", "blank_id", "num_classes", "output_features"):
        if key in info:
            signature[key] = export_lib.jsonable(info[key])
    os.makedirs(out, exist_ok=True)
    for name, blob in blobs.items():
        _atomic(os.path.join(out, f"{name}.stablehlo"), bytes(blob))
    text = json.dumps(signature, indent=2) + "\n"
    _atomic(os.path.join(out, "signature.json"), text.encode())
    return signature


def _atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
