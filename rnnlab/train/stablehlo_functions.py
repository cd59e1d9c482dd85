"""The functions of a trained model that :mod:`rnnlab.train.stablehlo` exports, per task.

Each is a :class:`Function`: a pure function of plain arrays with the parameters closed
over, its input names, its input specs as a callable of the time dimension ``t`` (``"b"``
marks the symbolic batch), and its output names.

- classification, regression, tagging: ``forward(inputs [b, t, F], seq_lengths [b])``;
- CTC: ``forward(inputs, input_lengths) -> (logits, logit_lengths)``;
- language models: ``forward(inputs [b, t]) -> (logits, carry...)`` and
  ``step(tokens [b], carry...) -> (logits [b, V], carry...)``;
- translation: ``encode(inputs [b, t], input_lengths [b]) -> (values, keys, state...)``,
  ``decode_step(tokens [b], state..., values, keys, input_lengths) -> (logits [b, V],
  state...)`` (the decoder state is the cell's carry and the fed-back vector, flattened),
  and ``translate(inputs, input_lengths) -> (tokens [b, T], lengths [b])``, greedy;
- forecasting: ``forward(inputs [b, t, F]) -> (forecast [b, H, K], quantiles [b, H, K, Q]
  | scale [b, H, K])``, in standardised units as the model sees them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

B = "b"


@dataclasses.dataclass(frozen=True)
class Function:
    """One exported function (module docstring)."""

    name: str
    fn: Callable[..., tuple[Any, ...]]
    inputs: tuple[str, ...]
    specs: Callable[[Any], tuple[tuple[tuple[Any, ...], Any], ...]]
    outputs: tuple[str, ...]


def min_time(model: nnx.Module, info: dict[str, Any]) -> int:
    """The shortest input the model reads: a forecaster needs its ``ar_order`` lags; other
    models one step."""
    if info["task"] != "forecast":
        return 1
    return max(1, int(model.ar_order or 0))


def _sequences(run, info) -> list[Function]:
    features = int(info["input_features"])

    def forward(inputs, seq_lengths):
        return (run({"inputs": inputs, "seq_lengths": seq_lengths})[0],)

    specs = lambda t: (((B, t, features), np.float32), ((B,), np.int32))  # noqa: E731
    return [Function("forward", forward, ("inputs", "seq_lengths"), specs, ("outputs",))]


def _ctc(run, info) -> list[Function]:
    features = int(info["input_features"])

    def forward(inputs, input_lengths):
        logits, aux = run({"inputs": inputs, "input_lengths": input_lengths})
        return logits, aux["logit_lengths"]

    specs = lambda t: (((B, t, features), np.float32), ((B,), np.int32))  # noqa: E731
    names = ("logits", "logit_lengths")
    return [Function("forward", forward, ("inputs", "input_lengths"), specs, names)]


def _lm(graphdef, state, run) -> list[Function]:
    merged = nnx.merge(graphdef, state)
    leaves, treedef = jax.tree.flatten(jax.eval_shape(lambda: merged.init_carry(1)))
    carry = tuple(f"carry_{i}" for i in range(len(leaves)))

    def forward(inputs):
        logits, aux = run({"inputs": inputs})
        return (logits, *jax.tree.leaves(aux["carry"]))

    def step(tokens, *leaves):
        model = nnx.merge(graphdef, state)
        logits, new = model.decode_step(tokens, jax.tree.unflatten(treedef, list(leaves)))
        return (logits, *jax.tree.leaves(new))

    carry_specs = tuple(((B, *x.shape[1:]), x.dtype) for x in leaves)
    return [
        Function("forward", forward, ("inputs",), lambda t: (((B, t), np.int32),),
                 ("logits", *carry)),
        Function("step", step, ("tokens", *carry),
                 lambda t: (((B,), np.int32), *carry_specs), ("logits", *carry)),
    ]  # fmt: skip


def _translation(graphdef, state, info) -> list[Function]:
    from rnnlab.models.attention import source_mask

    merged = nnx.merge(graphdef, state)
    tokens = jax.ShapeDtypeStruct((1, 2), np.int32)
    lengths = jax.ShapeDtypeStruct((1,), np.int32)
    enc = jax.eval_shape(lambda x, n: merged.encode(x, n), tokens, lengths)
    leaves, treedef = jax.tree.flatten(enc["state"])
    names = tuple(f"state_{i}" for i in range(len(leaves)))
    state_specs = tuple(((B, *x.shape[1:]), x.dtype) for x in leaves)
    values, keys = enc["values"], enc["keys"]
    max_target = int(info["max_target_len"])

    def encode(inputs, input_lengths):
        out = nnx.merge(graphdef, state).encode(inputs, input_lengths)
        return (out["values"], out["keys"], *jax.tree.leaves(out["state"]))

    def decode_step(tokens, *args):
        *leaves, values, keys, input_lengths = args
        model = nnx.merge(graphdef, state)
        enc = {"values": values, "keys": keys,
               "mask": source_mask(input_lengths, values.shape[1])}  # fmt: skip
        new, logits, _ = model.decode_step(jax.tree.unflatten(treedef, leaves), tokens, enc)
        return (logits, *jax.tree.leaves(new))

    def translate(inputs, input_lengths):
        model = nnx.merge(graphdef, state)
        batch = {"inputs": inputs, "input_lengths": input_lengths}
        return model.translate(batch, max_length=max_target, greedy=True)

    source = lambda t: (((B, t), np.int32), ((B,), np.int32))  # noqa: E731
    return [
        Function("encode", encode, ("inputs", "input_lengths"), source,
                 ("values", "keys", *names)),
        Function("decode_step", decode_step, ("tokens", *names, "values", "keys", "input_lengths"),
                 lambda t: (((B,), np.int32), *state_specs,
                            ((B, t, values.shape[-1]), values.dtype),
                            ((B, t, keys.shape[-1]), keys.dtype), ((B,), np.int32)),
                 ("logits", *names)),
        Function("translate", translate, ("inputs", "input_lengths"), source,
                 ("tokens", "lengths")),
    ]  # fmt: skip


def _forecast(graphdef, state, model, info) -> list[Function]:
    features = int(info["input_features"])
    extra = {"quantile": ("quantiles",), "gaussian": ("scale",)}.get(model.head_type, ())

    def forward(inputs):
        merged = nnx.merge(graphdef, state)
        # The seasonal-naive forecast is MASE's baseline, not an output: leaving it out
        # spares the export its index arithmetic on a symbolic length.
        merged.seasonal_period = None
        point, aux = merged({"inputs": inputs}, train=False)
        return (point, *(aux[k] for k in extra))

    specs = lambda t: (((B, t, features), np.float32),)  # noqa: E731
    return [Function("forward", forward, ("inputs",), specs, ("forecast", *extra))]


def functions(model: nnx.Module, info: dict[str, Any]) -> list[Function]:
    """The exported functions of ``model`` for its task (module docstring)."""
    graphdef, state = nnx.split(model)
    task = info["task"]

    def run(batch):
        return nnx.merge(graphdef, state)(batch, train=False)

    if task in ("classification", "regression", "tagging"):
        return _sequences(run, info)
    if task == "ctc":
        return _ctc(run, info)
    if task == "lm":
        return _lm(graphdef, state, run)
    if task == "seq2seq":
        return _translation(graphdef, state, info)
    if task == "forecast":
        return _forecast(graphdef, state, model, info)
    raise ValueError(
        f"stablehlo export covers the tasks classification, regression, tagging, ctc, lm, "
        f"seq2seq and forecast; this run's task is {task!r} (use --format params)"
    )
