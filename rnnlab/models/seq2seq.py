"""Sequence-to-sequence translator: bidirectional encoder, attentional decoder.

Encoder (Bahdanau et al. 2015): embeddings -> bidirectional stacked RNN over the source,
giving annotations ``h_j`` (forward and backward states concatenated). The decoder's initial
state is ``tanh(W [h_fwd_last; h_bwd_first])``.

Two decoder schemes, chosen by ``attention``:

- ``"additive"`` (Bahdanau et al. 2015): the context is computed from the previous decoder
  state and fed into the cell::

      c_t = Attn(s_{t-1}, h),  s_t = cell(s_{t-1}, [E y_{t-1}; c_t])

- ``"general"`` or ``"dot"`` (Luong et al. 2015, with input feeding): the context is
  computed from the new state, and the attentional vector is fed to the next step::

      s_t = cell(s_{t-1}, [E y_{t-1}; \\tilde h_{t-1}]),  c_t = Attn(s_t, h)

In both, ``\\tilde h_t = tanh(W_c [s_t; c_t])`` and ``logits_t = W_o \\tilde h_t``.

Training uses teacher forcing; with ``sampling_prob > 0`` each decoder input is, with that
probability, a token drawn from the model's own previous prediction instead of the truth
(scheduled sampling, Bengio et al. 2015). :meth:`Translator.translate` decodes greedily or
by beam search (:mod:`rnnlab.layers.decoding`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.cells.registry import make_cell
from rnnlab.layers import StackedRNN
from rnnlab.layers.decoding import beam_search, greedy_decode
from rnnlab.layers.feedback import feedback_loop
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.models.attention import make_attention, source_mask
from rnnlab.models.classifier import pool
from rnnlab.options import opt

Array = jax.Array


def _lengths(batch: Mapping[str, Array], key: str, tokens: Array) -> Array:
    lengths = batch.get(key)
    if lengths is None:
        return jnp.full(tokens.shape[:1], tokens.shape[1], jnp.int32)
    return jnp.asarray(lengths, jnp.int32)


def _check_tokens(name: str, tokens: Array) -> None:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(
            f"batch[{name!r}] must be integer tokens [batch, time], got "
            f"{tokens.dtype} {tuple(tokens.shape)}"
        )


@register("translator")
@dataclasses.dataclass(frozen=True)
class TranslatorConfig:
    """The options of :class:`Translator` a config sets (the rest come from the data)."""

    bos_id: int | None = opt(
        None, "first decoder input; ``None`` adds a dedicated start embedding."
    )
    pad_id: int = opt(0, "target padding token.")
    embed_features: int = opt(64, "embedding and decoder cell sizes.")
    hidden_features: int = opt(128, "embedding and decoder cell sizes.")
    encoder_features: int | None = opt(
        None, "encoder cell size per direction; defaults to ``hidden_features``,"
    )
    encoder_layers: int = opt(1, "depth of the bidirectional encoder.")
    cell: str = opt("lstm", "registered cell name for encoder and decoder.")
    attention: str = opt(
        "additive", '``"additive"`` (Bahdanau), ``"general"`` or ``"dot"`` (Luong).'
    )
    attention_features: int = opt(128, "hidden size of the additive score network.")
    dropout: float = opt(0.0, "rate on embeddings and the attentional vector.")
    sampling_prob: float = opt(
        0.0, "scheduled-sampling probability during training (0 = teacher forcing)."
    )
    eval_beam_size: int = opt(
        1, "outside training, :meth:`__call__` also decodes the sources (greedy"
    )
    eval_alpha: float = opt(0.0, "length-penalty exponent of that beam search.")
    dtype: Any = opt(None, "Translator argument dtype")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> Translator:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


class Translator(Model):
    """Attentional encoder-decoder; see the module docstring.

    Args:
      source_vocab_size, target_vocab_size: vocabulary sizes.
      eos_id: end-of-sequence token of the target vocabulary.
      bos_id: first decoder input; ``None`` adds a dedicated start embedding.
      pad_id: target padding token.
      embed_features, hidden_features: embedding and decoder cell sizes.
      encoder_features: encoder cell size per direction; defaults to ``hidden_features``,
        or half of it for ``attention="dot"``, which needs equal query and key sizes.
      encoder_layers: depth of the bidirectional encoder.
      cell: registered cell name for encoder and decoder.
      attention: ``"additive"`` (Bahdanau), ``"general"`` or ``"dot"`` (Luong).
      attention_features: hidden size of the additive score network.
      dropout: rate on embeddings and the attentional vector.
      sampling_prob: scheduled-sampling probability during training (0 = teacher forcing).
      eval_beam_size: outside training, :meth:`__call__` also decodes the sources (greedy
        for 1, beam search above) into ``aux["predictions"]`` for exact match and BLEU;
        0 turns this off.
      eval_alpha: length-penalty exponent of that beam search.
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        *,
        eos_id: int,
        bos_id: int | None = None,
        pad_id: int = 0,
        embed_features: int = 64,
        hidden_features: int = 128,
        encoder_features: int | None = None,
        encoder_layers: int = 1,
        cell: str = "lstm",
        attention: str = "additive",
        attention_features: int = 128,
        dropout: float = 0.0,
        sampling_prob: float = 0.0,
        eval_beam_size: int = 1,
        eval_alpha: float = 0.0,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("source_vocab_size", source_vocab_size)
        check_positive_int("target_vocab_size", target_vocab_size)
        for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
            if not 0 <= value < target_vocab_size:
                raise ValueError(f"{name} must be in [0, {target_vocab_size}), got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not 0.0 <= sampling_prob <= 1.0:
            raise ValueError(f"sampling_prob must be in [0, 1], got {sampling_prob!r}")
        dtype = resolve_dtype(dtype)
        self.target_vocab_size, self.eos_id, self.pad_id = target_vocab_size, eos_id, pad_id
        # A dedicated start row lives past the output vocabulary: it is never predicted.
        self.bos_id = target_vocab_size if bos_id is None else bos_id
        self.additive = attention == "additive"
        self.sampling_prob = float(sampling_prob)
        if (
            isinstance(eval_beam_size, bool)
            or not isinstance(eval_beam_size, int)
            or (eval_beam_size < 0)
        ):
            raise ValueError(f"eval_beam_size must be an int >= 0, got {eval_beam_size!r}")
        self.eval_beam_size, self.eval_alpha = eval_beam_size, float(eval_alpha)
        h = hidden_features
        if encoder_features is None:
            encoder_features = h // 2 if attention == "dot" and h % 2 == 0 else h

        self.source_embed = nnx.Embed(source_vocab_size, embed_features, dtype=dtype, rngs=rngs)
        self.target_embed = nnx.Embed(
            target_vocab_size + (bos_id is None), embed_features, dtype=dtype, rngs=rngs
        )
        self.encoder = StackedRNN(
            embed_features,
            encoder_features,
            encoder_layers,
            cell=cell,
            cell_kwargs={"dtype": dtype},
            bidirectional=True,
            rngs=rngs,
        )
        enc = self.encoder.output_features
        feed = enc if self.additive else h  # context (Bahdanau) or attentional vector (Luong)
        self.cell = make_cell(cell, embed_features + feed, h, rngs=rngs, dtype=dtype)
        self.carry_sizes = self.cell.carry_sizes()
        self.bridge = nnx.Linear(enc, sum(self.carry_sizes), dtype=dtype, rngs=rngs)
        self.attention = make_attention(
            attention, h, enc, attention_features=attention_features, dtype=dtype, rngs=rngs
        )
        self.combine = nnx.Linear(h + enc, h, dtype=dtype, rngs=rngs)
        self.readout = nnx.Linear(h, target_vocab_size, dtype=dtype, rngs=rngs)
        self.dropout_rate = float(dropout)
        self.deterministic = False  # NNX mode; .eval() sets it

    # -- encoder ---------------------------------------------------------------------------
    def _dropout(self, x: Array, key: Array | None) -> Array:
        """Inverted dropout with an explicit key (``None``: identity), usable inside scans."""
        if key is None or self.dropout_rate == 0.0:
            return x
        keep = 1.0 - self.dropout_rate
        mask = jax.random.bernoulli(key, keep, x.shape)
        return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))

    def encode(self, tokens: Array, lengths: Array, *, key: Array | None = None) -> dict:
        """Annotations, projected keys, source mask and the decoder's initial state.

        ``key``: dropout key (training only).
        """
        x = self._dropout(self.source_embed(tokens), key)
        h = self.encoder(x, seq_lengths=lengths)
        split = self.encoder.layers[-1].forward_rnn.output_features
        summary = pool(h, lengths, "last", split=split)
        init = jnp.tanh(self.bridge(summary).astype(jnp.float32))
        leaves, start = [], 0
        for size in self.carry_sizes:
            leaves.append(init[:, start : start + size])
            start += size
        carry = leaves[0] if len(leaves) == 1 else tuple(leaves)
        prev = leaves[-1] if self.additive else jnp.zeros_like(leaves[-1])
        return dict(
            values=h,
            keys=self.attention.keys(h),
            mask=source_mask(lengths, tokens.shape[1]),
            state={"carry": carry, "prev": prev},
        )

    # -- decoder ---------------------------------------------------------------------------
    def decode_step(
        self, state: dict, tokens: Array, enc: dict, *, key: Array | None = None
    ) -> tuple[dict, Array, Array]:
        """One decoder step: ``(state, tokens [B]) -> (state, logits [B, V], weights [B, S])``.

        ``key``: dropout key (training only).
        """
        k_emb, k_att = (None, None) if key is None else jax.random.split(key)
        e = self._dropout(self.target_embed(tokens), k_emb).astype(jnp.float32)
        if self.additive:
            ctx, weights = self.attention(state["prev"], enc["keys"], enc["values"], enc["mask"])
            carry, s = self.cell(state["carry"], jnp.concatenate([e, ctx], axis=-1))
            s = s.astype(jnp.float32)
            prev = s
        else:
            carry, s = self.cell(state["carry"], jnp.concatenate([e, state["prev"]], axis=-1))
            s = s.astype(jnp.float32)
            ctx, weights = self.attention(s, enc["keys"], enc["values"], enc["mask"])
        att = jnp.tanh(self.combine(jnp.concatenate([s, ctx], axis=-1)).astype(jnp.float32))
        if not self.additive:
            prev = att
        att = self._dropout(att, k_att)
        logits = self.readout(att).astype(jnp.float32)
        return {"carry": carry, "prev": prev}, logits, weights

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Teacher-forced logits ``[B, T, V]`` for ``batch["targets"]``.

        ``aux["attention"]`` holds the attention weights ``[B, T, S]``; outside training
        (with ``eval_beam_size > 0``) ``aux["predictions"]`` ``[B, T]`` and
        ``aux["prediction_lengths"]`` hold the decoded sources, up to the targets' width.
        """
        del carry  # each pair is translated from scratch
        train = not self.deterministic
        src, tgt = batch["inputs"], batch["targets"]
        _check_tokens("inputs", src)
        _check_tokens("targets", tgt)
        bos = jnp.full(tgt.shape[:1] + (1,), self.bos_id, jnp.int32)
        dec_in = jnp.concatenate([bos, tgt[:, :-1].astype(jnp.int32)], axis=1).T  # [T, B]
        steps = dec_in.shape[0]

        sampled = train and self.sampling_prob > 0
        dropped = train and self.dropout_rate > 0
        if (sampled or dropped) and rngs is None:
            raise ValueError("rngs must be given when training with dropout or sampling_prob")
        # All randomness is drawn here, outside the time loop, from the step's streams.
        k_enc = rngs.dropout() if dropped else None
        drop_keys = jax.random.split(rngs.dropout(), steps) if dropped else None
        if sampled:
            k_use, k_tok = jax.random.split(rngs.dropout())
            use_model = jax.random.bernoulli(k_use, self.sampling_prob, dec_in.shape)
            use_model = use_model.at[0].set(False)  # the start token is never sampled
            tok_keys = jax.random.split(k_tok, steps)
        else:
            use_model, tok_keys = None, None
        enc = self.encode(src, _lengths(batch, "input_lengths", src), key=k_enc)

        def body(c, xs):
            state, prev_logits = c
            truth, use, k_tok, k_drop = xs
            token = truth
            if sampled:
                drawn = jax.random.categorical(k_tok, jax.lax.stop_gradient(prev_logits))
                token = jnp.where(use, drawn.astype(jnp.int32), truth)
            state, logits, weights = self.decode_step(state, token, enc, key=k_drop)
            return (state, logits), (logits, weights)

        zeros = jnp.zeros(tgt.shape[:1] + (self.target_vocab_size,), jnp.float32)
        # A closed loop even under teacher forcing: each step's attention query (Bahdanau)
        # or input-fed vector (Luong) is the output of the step before.
        _, (logits, weights) = feedback_loop(
            body, (enc["state"], zeros), (dec_in, use_model, tok_keys, drop_keys)
        )
        aux = {
            "attention": jnp.swapaxes(weights, 0, 1),
            "encoder": enc["values"],
            "eos_id": self.eos_id,
        }
        if not train and self.eval_beam_size:
            aux["predictions"], aux["prediction_lengths"] = self._decode(
                enc, max_length=tgt.shape[1], beam_size=self.eval_beam_size, alpha=self.eval_alpha
            )
        return jnp.swapaxes(logits, 0, 1), aux

    def translate(
        self,
        batch: Mapping[str, Array],
        *,
        max_length: int,
        beam_size: int = 1,
        alpha: float = 0.0,
        greedy: bool | None = None,
    ) -> tuple[Array, Array]:
        """Decodes ``batch["inputs"]``: ``(tokens [B, max_length], lengths [B])``.

        Greedy when ``beam_size`` is 1 (or ``greedy``), else beam search with the GNMT
        length penalty ``alpha`` (Wu et al. 2016). Positions after the end token hold
        ``pad_id``.
        """
        src = batch["inputs"]
        _check_tokens("inputs", src)
        enc = self.encode(src, _lengths(batch, "input_lengths", src))
        return self._decode(
            enc, max_length=max_length, beam_size=beam_size, alpha=alpha, greedy=greedy
        )

    def _decode(self, enc, *, max_length, beam_size, alpha, greedy=None):
        start = jnp.full(enc["mask"].shape[:1], self.bos_id, jnp.int32)
        greedy = beam_size == 1 if greedy is None else greedy
        kw = dict(max_length=max_length, eos_id=self.eos_id, pad_id=self.pad_id)
        if greedy:
            step = lambda s, t: self.decode_step(s, t, enc)[:2]
            tokens, lengths, _ = greedy_decode(step, enc["state"], start, **kw)
            return tokens, lengths
        tiled = {k: jnp.repeat(enc[k], beam_size, axis=0) for k in ("values", "keys", "mask")}
        step = lambda s, t: self.decode_step(s, t, tiled)[:2]
        seqs, _, lengths = beam_search(
            step, enc["state"], start, beam_size=beam_size, alpha=alpha, **kw
        )
        return seqs[:, 0], lengths[:, 0]


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> Translator:
    """Translator for sequence-to-sequence data (``info["vocab_size"]`` or per-side sizes)."""
    src = info.get("source_vocab_size") or info.get("vocab_size")
    tgt = info.get("target_vocab_size") or info.get("vocab_size")
    if not src or not tgt or info.get("eos_id") is None and "eos_id" not in kwargs:
        raise ValueError(
            "translator needs dataset info with vocab_size (or source_vocab_size and "
            f"target_vocab_size) and eos_id, got keys {sorted(info)}"
        )
    for key in ("eos_id", "bos_id", "pad_id"):  # None: the dataset's
        if kwargs.get(key) is None and info.get(key) is not None:
            kwargs[key] = int(info[key])
    return Translator(int(src), int(tgt), rngs=rngs, **kwargs)
