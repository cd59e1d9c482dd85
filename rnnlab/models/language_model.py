"""Stacked recurrent language model (character or word level) and sampling from it.

Architecture (Zaremba et al. 2014; tied embeddings: Press & Wolf 2017, Inan et al. 2017)::

    e_t = E[x_t]                            embedding, [B, T, D]
    h_t^l = cell_l(h_{t-1}^l, h_t^{l-1})    L recurrent layers, h^0 = e
    logits_t = h_t^L W + b                  or, tied, (h_t^L P) E^T + b

The model is stateful for truncated backpropagation through time: it takes the carry left by
the previous batch (row ``b`` of batch ``k + 1`` continues row ``b`` of batch ``k``) and
returns the new one in ``aux["carry"]``. ``resets`` (bool ``[B, T]``) restart the state
from zeros where a new document begins inside a row.

Sampling (:func:`generate`) runs the prompt once, then one jitted step per generated token
that carries the recurrent state, so the prefix is never re-run.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.layers import RNN, StackedRNN, default_hoist
from rnnlab.models import register, resolve_dtype
from rnnlab.models.decoding import sample_logits
from rnnlab.scan import masked_scan

Array = jax.Array


def run_rnn(
    rnn: RNN, x: Array, carry: Any, resets: Array | None, params: dict[str, Array] | None = None
) -> tuple[Any, Array]:
    """One layer over batch-major ``x`` from ``carry``; ``resets`` restart from zeros.

    ``RNN.__call__`` restarts at resets from its initial carry, which for a stream is the
    state carried in from the previous batch, not the start of a document; this runs the
    same scan with the zero carry as the restart point. ``params`` replaces the cell's
    parameters (a weight-dropped kernel, recurrent-dropout masks:
    ``rnnlab.regularizers.prepare_layer``).
    """
    cell = rnn.cell
    params = cell.cell_params() if params is None else params
    zero = cell.initialize_carry(x.shape[:-2] + x.shape[-1:])
    xs = jnp.moveaxis(x, -2, 0)
    rs = None if resets is None else jnp.moveaxis(resets, -1, 0)
    hoist = default_hoist() if rnn.hoist_input_projection is None else rnn.hoist_input_projection
    if hoist:
        xs = cell.project(params, xs)
        step = lambda c, xp: cell.step_with(params, c, xp)
    else:
        step = lambda c, xt: cell.step_with(params, c, cell.project(params, xt))
    carry, ys = masked_scan(
        step, carry, xs, resets=rs, reset_carry=zero, unroll=rnn.unroll, remat=rnn.remat
    )
    return carry, jnp.moveaxis(ys, 0, -2)


class LanguageModel(nnx.Module):
    """Embedding -> stacked RNN -> vocabulary logits; see the module docstring.

    Args:
      vocab_size: number of tokens.
      embed_features: embedding size ``D``.
      hidden_features: cell size of every layer.
      num_layers: depth ``L``.
      cell: registered cell name (``"lstm"``, ``"gru"``, ...).
      cell_kwargs: extra cell arguments (``forget_bias``, ``proj_features``, ...).
      tie_embeddings: decode with the transposed embedding; when the top layer's size
        differs from ``D`` a linear projection ``P`` maps it to ``D`` first.
      dropout: rate on the embeddings, between layers and before the decoder (0 = off).
      dtype: compute dtype (``"bfloat16"`` for mixed precision); parameters stay
        ``param_dtype`` and carries float32.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_features: int = 128,
        hidden_features: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        cell_kwargs: Mapping[str, Any] | None = None,
        tie_embeddings: bool = False,
        dropout: float = 0.0,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rnn_kwargs: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        for name, value in (
            ("vocab_size", vocab_size),
            ("embed_features", embed_features),
            ("hidden_features", hidden_features),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        dtype = resolve_dtype(dtype)
        self.vocab_size, self.tie_embeddings = vocab_size, tie_embeddings
        self.dtype = dtype
        self.embed = nnx.Embed(
            vocab_size, embed_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.rnn = StackedRNN(
            embed_features,
            hidden_features,
            num_layers,
            cell=cell,
            cell_kwargs={"dtype": dtype, "param_dtype": param_dtype, **dict(cell_kwargs or {})},
            rnn_kwargs=dict(rnn_kwargs or {}),
            rngs=rngs,
        )
        top = self.rnn.output_features
        if tie_embeddings:
            self.proj = (
                None
                if top == embed_features
                else nnx.Linear(
                    top, embed_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs
                )
            )
            self.out_bias = nnx.Param(jnp.zeros((vocab_size,), param_dtype))
            self.head = None
        else:
            self.proj, self.out_bias = None, None
            self.head = nnx.Linear(top, vocab_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def init_carry(self, batch_size: int) -> list[Any]:
        """Zero float32 state for ``batch_size`` rows: one carry per layer."""
        return [
            layer.cell.initialize_carry((batch_size, layer.cell.in_features))
            for layer in self.rnn.layers
        ]

    def decode(self, h: Array) -> Array:
        """Top-layer states ``[..., H]`` -> float32 logits ``[..., V]``."""
        if self.tie_embeddings:
            if self.proj is not None:
                h = self.proj(h)
            logits = self.embed.attend(h) + self.out_bias[...].astype(h.dtype)
        else:
            logits = self.head(h)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        batch: Mapping[str, Array],
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        carry: Any = None,
    ) -> tuple[Array, dict[str, Any]]:
        """Logits ``[B, T, V]`` for ``batch["inputs"]`` (int ``[B, T]``); ``aux["carry"]``."""
        tokens = batch["inputs"]
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"batch['inputs'] must be integer tokens [batch, time], got "
                f"{tokens.dtype} {tuple(tokens.shape)}"
            )
        if carry is None:
            carry = self.init_carry(tokens.shape[0])
        resets = batch.get("resets")
        deterministic = not train
        x = self.dropout(self.embed(tokens), deterministic=deterministic, rngs=rngs)
        carries = []
        for i, layer in enumerate(self.rnn.layers):
            c, x = run_rnn(layer, x, carry[i], resets)
            carries.append(c)
            x = self.dropout(x, deterministic=deterministic, rngs=rngs)
        logits = self.decode(x)
        return logits, {"carry": carries, "hidden": x}

    def decode_step(self, tokens: Array, carry: Any) -> tuple[Array, Any]:
        """One time step: tokens ``[B]`` -> (logits ``[B, V]``, new carry)."""
        x = self.embed(tokens)
        new = []
        for i, layer in enumerate(self.rnn.layers):
            c, x = layer.cell(carry[i], x)
            new.append(c)
        return self.decode(x), new


@functools.partial(jax.jit, static_argnames=("graphdef", "length", "top_k", "top_p", "greedy"))
def _generate(graphdef, state, prompt, key, temperature, *, length, top_k, top_p, greedy):
    model = nnx.merge(graphdef, state)
    logits, aux = model({"inputs": prompt}, train=False)

    def body(carry, k):
        last_logits, state_carry = carry
        if greedy:
            token = jnp.argmax(last_logits, axis=-1).astype(jnp.int32)
        else:
            token = sample_logits(k, last_logits, temperature=temperature, top_k=top_k, top_p=top_p)
        next_logits, state_carry = model.decode_step(token, state_carry)
        return (next_logits, state_carry), token

    keys = jax.random.split(key, length)
    _, tokens = jax.lax.scan(body, (logits[:, -1], aux["carry"]), keys)
    return jnp.moveaxis(tokens, 0, 1)


def generate(
    model: LanguageModel,
    prompt: Array,
    length: int,
    *,
    key: Array,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> Array:
    """Continues ``prompt`` (int ``[B, P]``, ``P >= 1``) by ``length`` tokens ``[B, length]``.

    ``temperature`` 0 decodes greedily; see :func:`sample_logits` for ``top_k``/``top_p``.
    """
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be int [batch, time>=1], got shape {tuple(prompt.shape)}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if not 0 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k must be in [0, {model.vocab_size}], got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    graphdef, state = nnx.split(model)
    return _generate(
        graphdef,
        state,
        prompt,
        key,
        jnp.float32(max(temperature, 1e-6)),
        length=length,
        top_k=top_k,
        top_p=float(top_p),
        greedy=temperature == 0,
    )


@register("language_model")
def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> LanguageModel:
    """Builds a :class:`LanguageModel` for token data (``info["vocab_size"]``)."""
    if not info.get("vocab_size"):
        raise ValueError(
            f"language_model needs token data with a vocab_size, got dataset info keys "
            f"{sorted(info)} (task {info.get('task')!r})"
        )
    return LanguageModel(int(info["vocab_size"]), rngs=rngs, **kwargs)
