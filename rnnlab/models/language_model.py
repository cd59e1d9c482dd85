"""Stacked recurrent language model (character or word level) and sampling from it.

Architecture (Zaremba et al. 2014; tied embeddings: Press & Wolf 2017, Inan et al. 2017)::

    e_t = E[x_t]                            embedding, [B, T, D]
    h_t^l = cell_l(h_{t-1}^l, h_t^{l-1})    L recurrent layers, h^0 = e
    logits_t = h_t^L W + b                  or, tied, (h_t^L P) E^T + b

The model is stateful for truncated backpropagation through time: it takes the carry left by
the previous batch (row ``b`` of batch ``k + 1`` continues row ``b`` of batch ``k``) and
returns the new one in ``aux["carry"]``. ``resets`` (bool ``[B, T]``) restart the state
from zeros where a new document begins inside a row; the stack's layers take the fused
path with such resets (:mod:`rnnlab.layers.dispatch`).

Regularisation is an option of the stack (:class:`rnnlab.layers.StackedRNN`), in the order
of AWD-LSTM (Merity et al. 2017)::

    E -> embedding dropout (whole word types) -> lookup -> input dropout
      -> layer 1 (weight drop, recurrent dropout) -> hidden dropout -> ... -> layer L
      -> raw -> output dropout -> decoder            loss += AR(dropped) + TAR(raw)

Masks that must stay fixed over time are drawn once per batch outside the time loop, all
from one stream (:meth:`StackedRNN.dropout_stream <rnnlab.layers.StackedRNN.dropout_stream>`):
the embedding dropout's first, then the stack's in its order. The plain ``dropout`` is the
stack's input, hidden and output dropout. Every dropout is the identity in evaluation mode;
zoneout takes its expectation there, in a whole-sequence call and in the sampler's steps
alike (both run the same stack).

Sampling (:func:`generate`) runs the prompt once, then one jitted step per generated token
that carries the recurrent state, so the prefix is never re-run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.layers import StackedRNN
from rnnlab.layers.decoding import sample_logits
from rnnlab.layers.feedback import feedback_loop
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.options import opt
from rnnlab.regularizers import Regularization

Array = jax.Array


@register("language_model", "regularized_language_model")  # the second: the name older configs use
@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    """The options of :class:`LanguageModel` a config sets (the rest come from the data)."""

    embed_features: int = opt(128, "embedding size ``D``.")
    hidden_features: int = opt(256, "cell size of every layer.")
    num_layers: int = opt(1, "depth ``L``.")
    cell: str = opt("lstm", 'registered cell name (``"lstm"``, ``"gru"``, ...).')
    cell_kwargs: Mapping[str, Any] | None = opt(
        None, "extra cell arguments (``forget_bias``, ``proj_features``, ...)."
    )
    tie_embeddings: bool = opt(
        False, "decode with the transposed embedding; when the top layer's size"
    )
    dropout: float = opt(
        0.0, "rate on the embeddings, between layers and before the decoder (0 = off);"
    )
    regularization: Any = opt(
        None, "a :class:`~rnnlab.regularizers.Regularization` or a mapping of its"
    )
    dtype: Any = opt(None, 'compute dtype (``"bfloat16"`` for mixed precision); parameters stay')
    param_dtype: Any = opt("float32", "LanguageModel argument param_dtype")
    rnn_kwargs: Mapping[str, Any] | None = opt(None, "LanguageModel argument rnn_kwargs")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> LanguageModel:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


# regularized_language_model: same as language_model


class LanguageModel(Model):
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
      dropout: rate on the embeddings, between layers and before the decoder (0 = off);
        with a ``regularization`` use its input/hidden/output dropout instead.
      regularization: a :class:`~rnnlab.regularizers.Regularization` or a mapping of its
        fields (``Regularization.awd_lstm().to_dict()`` for the full recipe); ``None`` is
        all off. Training adds the weighted ``ar``/``tar`` terms to ``aux["losses"]``.
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
        regularization: Any = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rnn_kwargs: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("embed_features", embed_features)
        check_positive_int("hidden_features", hidden_features)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        reg = Regularization.from_config(regularization)
        if reg.active and dropout:
            raise ValueError(
                f"dropout must be 0 when regularization is given (use its input_dropout, "
                f"hidden_dropout, output_dropout), got {dropout!r}"
            )
        dtype = resolve_dtype(dtype)
        # A config names the parameter dtype ("float32"); library calls may pass a dtype.
        param_dtype = resolve_dtype(param_dtype) if isinstance(param_dtype, str) else param_dtype
        self.vocab_size, self.tie_embeddings = vocab_size, tie_embeddings
        self.dtype = dtype
        self.embed = nnx.Embed(
            vocab_size, embed_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        # The plain dropout on the embeddings, between layers and before the decoder is the
        # stack's input, hidden and output dropout: one path for every mask.
        plain = dict(input_dropout=dropout, output_dropout=dropout, variational=False)
        stack_reg = reg if reg.active else reg.replace(**plain)
        self.rnn = StackedRNN(
            embed_features,
            hidden_features,
            num_layers,
            cell=cell,
            cell_kwargs={"dtype": dtype, "param_dtype": param_dtype, **dict(cell_kwargs or {})},
            dropout=0.0 if reg.active else dropout,
            regularization=stack_reg,
            rnn_kwargs=dict(rnn_kwargs or {}),
            rngs=rngs,
        )
        self.regularization = reg
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
        # Whole word types: one mask over the rows of the embedding matrix [vocab, D].
        self.embedding_dropout = nnx.Dropout(reg.embedding_dropout, broadcast_dims=(1,))

    def init_carry(self, batch_size: int) -> list[Any]:
        """Zero float32 state for ``batch_size`` rows: one carry per layer."""
        return self.rnn.initialize_carry((batch_size, self.rnn.in_features))

    def decode(self, h: Array) -> Array:
        """Top-layer states ``[..., H]`` -> float32 logits ``[..., V]``."""
        if self.tie_embeddings:
            if self.proj is not None:
                h = self.proj(h)
            logits = self.embed.attend(h) + self.out_bias[...].astype(h.dtype)
        else:
            logits = self.head(h)
        return logits.astype(jnp.float32)

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Logits ``[B, T, V]`` for ``batch["inputs"]`` (int ``[B, T]``).

        ``aux["carry"]`` is the state for the next batch, ``aux["hidden"]`` the top layer's
        output; in training with AR/TAR, ``aux["losses"]`` holds the weighted terms.
        """
        tokens = batch["inputs"]
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"batch['inputs'] must be integer tokens [batch, time], got "
                f"{tokens.dtype} {tuple(tokens.shape)}"
            )
        if carry is None:
            carry = self.init_carry(tokens.shape[0])
        resets = batch.get("resets")
        zeros = self.init_carry(tokens.shape[0]) if resets is not None else None
        training = not self.rnn.deterministic
        stream = None
        if training and self.embedding_dropout.rate > 0:
            stream = self.rnn.dropout_stream(rngs)
            table = self.embedding_dropout(self.embed.embedding[...], deterministic=False,
                                           rngs=stream)  # fmt: skip
            x = jnp.take(table, tokens, axis=0)
            if self.dtype is not None:
                x = x.astype(self.dtype)
        else:
            x = self.embed(tokens)
        carries, x, aux = self.rnn(
            x,
            initial_carry=carry,
            resets=resets,
            reset_carry=zeros,
            rngs=stream if stream is not None else rngs,
            return_carry=True,
            return_aux=True,
        )
        out: dict[str, Any] = {"carry": carries, "hidden": x}
        losses = {k: aux[k] for k in ("ar", "tar") if k in aux}
        if training and losses:
            out["losses"] = losses
        return self.decode(x), out

    def decode_step(self, tokens: Array, carry: Any) -> tuple[Array, Any]:
        """One time step: tokens ``[B]`` -> (logits ``[B, V]``, new carry), through the same
        stack as a whole sequence (:meth:`StackedRNN.step`)."""
        carry, h = self.rnn.step(carry, self.embed(tokens))
        return self.decode(h), carry


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
    _, tokens = feedback_loop(body, (logits[:, -1], aux["carry"]), keys)
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
    check_positive_int("length", length)
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


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> LanguageModel:
    """Builds a :class:`LanguageModel` for token data (``info["vocab_size"]``)."""
    if not info.get("vocab_size"):
        raise ValueError(
            f"language_model needs token data with a vocab_size, got dataset info keys "
            f"{sorted(info)} (task {info.get('task')!r})"
        )
    return LanguageModel(int(info["vocab_size"]), rngs=rngs, **kwargs)
