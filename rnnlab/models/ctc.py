"""Speech recognition with connectionist temporal classification (Graves et al. 2006).

A bidirectional recurrent stack reads acoustic feature frames and emits, per frame, logits
over the labels plus a blank (id ``blank_id``, 0 by default). CTC sums over every alignment
``pi`` of length ``T`` that collapses to the label sequence ``y`` (merge repeats, then drop
blanks; the map ``B``)::

    p(y | x) = sum_{pi : B(pi) = y} prod_t p(pi_t | x),      loss = -log p(y | x)

computed by ``optax.ctc_loss``. Decoding:

- :func:`ctc_greedy_decode`: best path, ``B(argmax_t p(. | x))`` (jittable);
- :func:`prefix_beam_search`: prefix beam search (Hannun et al. 2014), which sums the
  probability of all alignments of each prefix, split into paths ending in blank and not;
  with an unlimited beam it returns the most probable labelling exactly.

Error rates (character or token) are edit distances over reference lengths
(:func:`rnnlab.tasks.scores.error_rate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.layers import StackedRNN
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.options import opt

Array = jax.Array


def lengths_to_paddings(lengths: Array, num_steps: int) -> Array:
    """Float paddings ``[B, T]``: 1.0 at and after each length (optax's convention)."""
    steps = jnp.arange(num_steps, dtype=jnp.int32)[None, :]
    return (steps >= lengths.astype(jnp.int32)[:, None]).astype(jnp.float32)


def ctc_loss(
    logits: Array, logit_lengths: Array, labels: Array, label_lengths: Array, *, blank_id: int = 0
) -> Array:
    """Per-sequence CTC negative log-likelihood ``[B]`` (``optax.ctc_loss`` on lengths)."""
    if logits.ndim != 3 or labels.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"logits must be [B, T, V] and labels [B, U] with the same B, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return optax.ctc_loss(
        logits.astype(jnp.float32),
        lengths_to_paddings(logit_lengths, logits.shape[1]),
        labels.astype(jnp.int32),
        lengths_to_paddings(label_lengths, labels.shape[1]),
        blank_id=blank_id,
    )


def ctc_greedy_decode(
    logits: Array, lengths: Array, *, blank_id: int = 0, pad_id: int = 0
) -> tuple[Array, Array]:
    """Best-path decoding: ``(labels [B, T], label_lengths [B])``, padded with ``pad_id``.

    Takes the most likely symbol per valid frame, merges repeats and removes blanks.
    """
    best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    num_steps = best.shape[1]
    valid = jnp.arange(num_steps)[None, :] < lengths.astype(jnp.int32)[:, None]
    prev = jnp.concatenate([jnp.full_like(best[:, :1], -1), best[:, :-1]], axis=1)
    keep = valid & (best != blank_id) & (best != prev)
    position = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, num_steps)  # past the end: dropped
    rows = jnp.broadcast_to(jnp.arange(best.shape[0])[:, None], best.shape)
    out = jnp.full_like(best, pad_id).at[rows, position].set(best, mode="drop")
    return out, jnp.sum(keep, axis=1).astype(jnp.int32)


def prefix_beam_search(
    log_probs: np.ndarray, *, beam_width: int = 8, blank_id: int = 0
) -> list[tuple[tuple[int, ...], float]]:
    """Prefix beam search over one utterance's frame log-probabilities ``[T, V]``.

    For each prefix ``l`` it tracks ``p_b(l)`` and ``p_nb(l)``, the probability of all
    alignments of the frames so far that collapse to ``l`` and end in a blank or not.
    Extending by symbol ``c`` at frame ``t``::

        p_nb(l + c) += p(c_t) * (p_b(l) if c == l[-1] else p_b(l) + p_nb(l))
        p_nb(l)     += p(c_t) * p_nb(l)        if c == l[-1]
        p_b(l)      += p(blank_t) * (p_b(l) + p_nb(l))

    and after every frame keeps the ``beam_width`` prefixes with the largest
    ``p_b + p_nb`` (Hannun et al. 2014). Runs on the host in log space.

    Returns:
      ``[(labels, log_prob), ...]``, best first, at most ``beam_width`` of them.
    """
    check_positive_int("beam_width", beam_width)
    lp = np.asarray(log_probs, np.float64)
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be [time, vocab], got shape {lp.shape}")
    neg = -np.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
    symbols = [c for c in range(lp.shape[1]) if c != blank_id]

    def add(table, prefix, which, value):
        entry = table.setdefault(prefix, [neg, neg])
        entry[which] = np.logaddexp(entry[which], value)

    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(nxt, prefix, 0, total + frame[blank_id])
            for c in symbols:
                if prefix and prefix[-1] == c:
                    add(nxt, prefix + (c,), 1, pb + frame[c])
                    add(nxt, prefix, 1, pnb + frame[c])
                else:
                    add(nxt, prefix + (c,), 1, total + frame[c])
        # Prefixes no alignment can reach yet (e.g. a repeat with no frame for its blank)
        # have probability 0 and are dropped.
        live = [kv for kv in nxt.items() if np.logaddexp(*kv[1]) > neg]
        ranked = sorted(live, key=lambda kv: -np.logaddexp(*kv[1]))[:beam_width]
        beams = {prefix: (pb, pnb) for prefix, (pb, pnb) in ranked}
    return [(prefix, float(np.logaddexp(pb, pnb))) for prefix, (pb, pnb) in beams.items()]


def prefix_beam_decode(
    logits: Array, lengths: Array, *, beam_width: int = 8, blank_id: int = 0
) -> list[tuple[int, ...]]:
    """The best labelling of each utterance by :func:`prefix_beam_search`."""
    log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1))
    lengths = np.asarray(lengths)
    return [
        prefix_beam_search(lp[: int(n)], beam_width=beam_width, blank_id=blank_id)[0][0]
        for lp, n in zip(log_probs, lengths, strict=True)
    ]


def strip(labels: Array, lengths: Array) -> list[tuple[int, ...]]:
    """Padded label arrays ``[B, U]`` -> a list of label tuples of the given lengths."""
    labels, lengths = np.asarray(labels), np.asarray(lengths)
    return [tuple(int(v) for v in row[: int(n)]) for row, n in zip(labels, lengths, strict=True)]


def stack_frames(x: Array, lengths: Array, factor: int) -> tuple[Array, Array]:
    """Concatenates ``factor`` consecutive frames: ``[B, T, F] -> [B, ceil(T/k), k F]``.

    Shortens the sequence the recurrent stack runs over (Sak et al. 2015 stack frames for
    CTC models in the same way); lengths become ``ceil(L / k)`` and frames past a length
    are zeroed.
    """
    if factor == 1:
        return x, lengths
    b, t, f = x.shape
    # Padding frames are zeroed: the last stacked step may mix valid and padding frames.
    valid = jnp.arange(t)[None, :, None] < lengths[:, None, None]
    x = jnp.where(valid, x, jnp.zeros_like(x))
    pad = (-t) % factor
    x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
    x = x.reshape(b, (t + pad) // factor, factor * f)
    return x, (lengths + factor - 1) // factor


@register("speech_recognizer")
@dataclasses.dataclass(frozen=True)
class SpeechRecognizerConfig:
    """The options of :class:`SpeechRecognizer` a config sets (the rest come from the data)."""

    hidden_features: int = opt(128, "the bidirectional recurrent stack.")
    num_layers: int = opt(2, "the bidirectional recurrent stack.")
    cell: str = opt("lstm", "the bidirectional recurrent stack.")
    frame_stack: int = opt(
        1, "frames concatenated per recurrent step (``T' = ceil(T / frame_stack)``)."
    )
    dropout: float = opt(0.0, "rate between recurrent layers.")
    blank_id: int = opt(0, "the blank label.")
    dtype: Any = opt(None, "SpeechRecognizer argument dtype")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> SpeechRecognizer:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


class SpeechRecognizer(Model):
    """Frames ``[B, T, F]`` -> per-frame label logits ``[B, T', num_labels]`` for CTC.

    Args:
      input_features: features per frame.
      num_labels: labels including the blank.
      hidden_features, num_layers, cell: the bidirectional recurrent stack.
      frame_stack: frames concatenated per recurrent step (``T' = ceil(T / frame_stack)``).
      dropout: rate between recurrent layers.
      blank_id: the blank label.
    """

    def __init__(
        self,
        input_features: int,
        num_labels: int,
        *,
        hidden_features: int = 128,
        num_layers: int = 2,
        cell: str = "lstm",
        frame_stack: int = 1,
        dropout: float = 0.0,
        blank_id: int = 0,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("input_features", input_features)
        check_positive_int("num_labels", num_labels)
        self.frame_stack = check_positive_int("frame_stack", frame_stack)
        if not 0 <= blank_id < num_labels:
            raise ValueError(f"blank_id must be in [0, {num_labels}), got {blank_id!r}")
        dtype = resolve_dtype(dtype)
        self.input_features, self.num_labels, self.blank_id = input_features, num_labels, blank_id
        self.rnn = StackedRNN(
            input_features * frame_stack,
            hidden_features,
            num_layers,
            cell=cell,
            cell_kwargs={"dtype": dtype},
            bidirectional=True,
            dropout=dropout,
            rngs=rngs,
        )
        self.head = nnx.Linear(self.rnn.output_features, num_labels, dtype=dtype, rngs=rngs)

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Logits ``[B, T', V]``; ``aux["logit_lengths"]`` ``[B]``, ``aux["hidden"]``."""
        del carry
        x = batch["inputs"]
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[-1] != self.input_features:
            raise ValueError(
                f"batch['inputs'] must be frames [B, T, {self.input_features}], got "
                f"{tuple(x.shape)}"
            )
        lengths = batch.get("input_lengths", batch.get("seq_lengths"))
        if lengths is None:
            lengths = jnp.full(x.shape[:1], x.shape[1], jnp.int32)
        x, lengths = stack_frames(
            x.astype(jnp.float32), jnp.asarray(lengths, jnp.int32), self.frame_stack
        )
        h = self.rnn(x, seq_lengths=lengths, rngs=rngs)
        logits = self.head(h).astype(jnp.float32)
        return logits, {"logit_lengths": lengths, "hidden": h, "blank_id": self.blank_id}

    def decode(self, batch: Mapping[str, Array], *, beam_width: int = 1) -> list[tuple[int, ...]]:
        """Label sequences: best path (``beam_width`` 1) or prefix beam search."""
        logits, aux = _forward(self, dict(batch))
        if beam_width == 1:
            return strip(*ctc_greedy_decode(logits, aux["logit_lengths"], blank_id=self.blank_id))
        return prefix_beam_decode(
            logits, aux["logit_lengths"], beam_width=beam_width, blank_id=self.blank_id
        )


@nnx.jit
def _forward(model: SpeechRecognizer, batch: dict) -> tuple[Array, dict[str, Any]]:
    logits, aux = model(batch, train=False)
    return logits, {"logit_lengths": aux["logit_lengths"]}


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> SpeechRecognizer:
    """Recogniser for CTC data: ``info["input_features"]`` and ``info["num_labels"]``."""
    features, labels = info.get("input_features"), info.get("num_labels")
    if not features or not labels:
        raise ValueError(
            f"speech_recognizer needs dataset info with input_features and num_labels "
            f"(blank included), got keys {sorted(info)}"
        )
    return SpeechRecognizer(int(features), int(labels), rngs=rngs, **kwargs)
