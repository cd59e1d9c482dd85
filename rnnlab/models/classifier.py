"""Sequence classifier and regressor: a stacked RNN, a pooling over time, a linear head.

Used for classification datasets (JapaneseVowels, MNIST-1D: ``info["num_classes"]``
logits) and for sequence-level regression such as the adding problem (Hochreiter &
Schmidhuber 1997: ``info["output_features"]`` outputs).

Pooling over the valid steps ``t < L`` of each sequence:

- ``last``: the output at the last valid step, ``h_{L-1}`` (for a bidirectional stack, the
  forward half at ``L - 1`` and the backward half at ``0``: each direction's final state);
- ``mean``: ``(1/L) sum_t h_t``;
- ``max``: the element-wise maximum over valid steps;
- ``attention``: ``sum_t a_t h_t`` with ``a = softmax_{t<L}(v^T tanh(W h_t + b))``, a learnt
  additive attention over the valid steps (Bahdanau et al. 2015; as attention pooling:
  Yang et al. 2016); its weights are returned in ``aux["attention"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.layers import StackedRNN
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.models.attention import masked_softmax, source_mask
from rnnlab.options import opt

Array = jax.Array

POOLINGS = ("last", "mean", "max", "attention")


def _last_valid(h: Array, lengths: Array) -> Array:
    """``h[b, lengths[b] - 1]`` for ``h`` ``[B, T, F]`` (index 0 when a length is 0)."""
    idx = jnp.clip(lengths - 1, 0, h.shape[1] - 1)
    return jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0]


def pool(h: Array, lengths: Array, how: str, *, split: int | None = None) -> Array:
    """Pools ``h`` ``[B, T, F]`` over the valid steps (see the module docstring).

    ``split``: for ``last`` on bidirectional outputs, the size of the forward half.
    """
    valid = jnp.arange(h.shape[1])[None, :] < lengths[:, None]
    if how == "last":
        if split is None:
            return _last_valid(h, lengths)
        return jnp.concatenate([_last_valid(h[..., :split], lengths), h[:, 0, split:]], axis=-1)
    if how == "mean":
        total = jnp.sum(jnp.where(valid[..., None], h, jnp.zeros_like(h)), axis=1)
        count = jnp.maximum(lengths, 1).astype(h.dtype)[:, None]
        return total / count
    if how == "max":
        low = jnp.asarray(jnp.finfo(h.dtype).min, h.dtype)
        return jnp.max(jnp.where(valid[..., None], h, low), axis=1)
    if how == "attention":
        raise ValueError("pooling 'attention' has parameters: use SequenceClassifier")
    raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}")


@register("classifier")
@dataclasses.dataclass(frozen=True)
class SequenceClassifierConfig:
    """The options of :class:`SequenceClassifier` a config sets (the rest come from the data)."""

    hidden_features: int = opt(128, "the recurrent stack.")
    num_layers: int = opt(1, "the recurrent stack.")
    cell: str = opt("lstm", "the recurrent stack.")
    cell_kwargs: Mapping[str, Any] | None = opt(None, "the recurrent stack.")
    bidirectional: bool = opt(False, "the recurrent stack.")
    pooling: str = opt(
        "last", "``last`` | ``mean`` | ``max`` | ``attention`` | ``none`` (no pooling: an"
    )
    vocab_size: int = opt(0, "token inputs.")
    embed_features: int = opt(64, "token inputs.")
    dropout: float = opt(0.0, "rate between layers and before the head.")
    attention_features: int = opt(64, "hidden size of the attention pooling's score network.")
    dtype: Any = opt(None, 'compute dtype (``"bfloat16"`` for mixed precision).')
    param_dtype: Any = opt("float32", "SequenceClassifier argument param_dtype")
    rnn_kwargs: Mapping[str, Any] | None = opt(None, "SequenceClassifier argument rnn_kwargs")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> SequenceClassifier:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


class SequenceClassifier(Model):
    """Stacked RNN -> pooling -> (dropout) -> linear head with ``num_outputs`` outputs.

    Args:
      input_features: features per step of float inputs ``[B, T, F]``; ignored when
        ``vocab_size`` is set (integer token inputs ``[B, T]`` are embedded first).
      num_outputs: classes (logits) or regression targets.
      hidden_features, num_layers, cell, cell_kwargs, bidirectional: the recurrent stack.
      pooling: ``last`` | ``mean`` | ``max`` | ``attention`` | ``none`` (no pooling: an
        output per time step, ``[B, T, num_outputs]``, for tagging).
      attention_features: hidden size of the attention pooling's score network.
      vocab_size, embed_features: token inputs.
      dropout: rate between layers and before the head.
      dtype: compute dtype (``"bfloat16"`` for mixed precision).
    """

    def __init__(
        self,
        input_features: int,
        num_outputs: int,
        *,
        hidden_features: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        cell_kwargs: Mapping[str, Any] | None = None,
        bidirectional: bool = False,
        pooling: str = "last",
        vocab_size: int = 0,
        embed_features: int = 64,
        dropout: float = 0.0,
        attention_features: int = 64,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rnn_kwargs: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        if pooling not in (*POOLINGS, "none"):  # none: no pooling, an output per step
            raise ValueError(f"pooling must be one of {(*POOLINGS, 'none')}, got {pooling!r}")
        check_positive_int("num_outputs", num_outputs)
        dtype = resolve_dtype(dtype)
        # A config names the parameter dtype ("float32"); library calls may pass a dtype.
        param_dtype = resolve_dtype(param_dtype) if isinstance(param_dtype, str) else param_dtype
        self.pooling, self.bidirectional = pooling, bidirectional
        if vocab_size:
            self.embed = nnx.Embed(
                vocab_size, embed_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs
            )
            input_features = embed_features
        else:
            self.embed = None
        self.input_features = input_features
        self.rnn = StackedRNN(
            input_features,
            hidden_features,
            num_layers,
            cell=cell,
            cell_kwargs={"dtype": dtype, "param_dtype": param_dtype, **dict(cell_kwargs or {})},
            bidirectional=bidirectional,
            dropout=dropout,
            rnn_kwargs=dict(rnn_kwargs or {}),
            rngs=rngs,
        )
        self.head = nnx.Linear(
            self.rnn.output_features, num_outputs, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.dropout = nnx.Dropout(dropout)
        if pooling == "attention":
            feats = self.rnn.output_features
            self.att_proj = nnx.Linear(feats, attention_features, dtype=dtype, rngs=rngs)
            self.att_score = nnx.Linear(attention_features, 1, use_bias=False, rngs=rngs)
        else:
            self.att_proj = self.att_score = None

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Float32 outputs ``[B, num_outputs]``; ``aux["pooled"]``, ``aux["hidden"]``."""
        del carry  # every sequence starts from the zero state
        x = batch["inputs"]
        if self.embed is not None:
            x = self.embed(x)
        elif x.ndim == 2:  # one feature per step, stored without a feature axis
            x = x[..., None]
        x = x.astype(jnp.float32) if not jnp.issubdtype(x.dtype, jnp.floating) else x
        lengths = batch.get("seq_lengths")
        if lengths is None:
            lengths = jnp.full(x.shape[:1], x.shape[1], jnp.int32)
        h = self.rnn(x, seq_lengths=lengths, rngs=rngs)
        aux = {"hidden": h}
        if self.pooling == "attention":
            scores = self.att_score(jnp.tanh(self.att_proj(h)))[..., 0]
            aux["attention"] = masked_softmax(scores, source_mask(lengths, h.shape[1]))
            pooled = jnp.einsum("bt,btf->bf", aux["attention"], h.astype(jnp.float32))
        elif self.pooling == "none":  # a tagger: one output per time step
            pooled = h
        else:
            split = self.rnn.layers[-1].forward_rnn.output_features if self.bidirectional else None
            pooled = pool(h, lengths, self.pooling, split=split)
        pooled = self.dropout(pooled, rngs=rngs)
        out = self.head(pooled).astype(jnp.float32)
        return out, {"pooled": pooled, **aux}


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> SequenceClassifier:
    """Classifier for ``task == "classification"``, regressor for ``"regression"``, tagger
    (``pooling="none"``: logits per step) for ``"tagging"``."""
    task = info.get("task")
    if (task == "tagging") != (kwargs.get("pooling") == "none"):
        raise ValueError(
            f"pooling 'none' (an output per step) is for tagging data and tagging data needs "
            f"it; got pooling {kwargs.get('pooling', 'last')!r} for task {task!r}"
        )
    if task in ("classification", "tagging"):
        num_outputs = info.get("num_classes")
    elif task == "regression":
        num_outputs = info.get("output_features")
    else:
        raise ValueError(
            f"classifier fits data with task 'classification' or 'regression', got {task!r}"
        )
    if not num_outputs:
        raise ValueError(f"dataset info lacks the number of outputs for task {task!r}: {info}")
    vocab = int(info.get("vocab_size") or 0) if kwargs.get("vocab_size") is None else None
    if vocab is not None:
        kwargs["vocab_size"] = vocab
    features = int(info.get("input_features") or 1)
    return SequenceClassifier(features, int(num_outputs), rngs=rngs, **kwargs)
