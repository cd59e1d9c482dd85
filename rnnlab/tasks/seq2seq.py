"""Translation (task ``"seq2seq"``): teacher-forced token loss, decoded exact match and BLEU,
and a report of decoded examples."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

from rnnlab.tasks.common import Array, Sums, row_weights, weighted
from rnnlab.tasks.evaluation import predictions, report_split
from rnnlab.tasks.registry import Task, register
from rnnlab.tasks.scores import bleu_from_stats, bleu_stats, exact_match


def seq2seq_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """Token cross-entropy (``loss``) and ``token_accuracy`` of the teacher-forced logits;
    with decoded ``aux["predictions"]`` (evaluation) also ``exact_match`` and the BLEU
    statistics (``bleu_*``) of the decoded sequences, ``</s>`` excluded."""
    targets = batch["targets"].astype(jnp.int32)
    w = batch.get("weights")
    w = jnp.ones(targets.shape, jnp.float32) if w is None else jnp.asarray(w, jnp.float32)
    w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (targets.ndim - w.ndim)), targets.shape)
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), targets)
    correct = jnp.argmax(outputs, axis=-1) == targets
    sums = {"loss": weighted(ce, w), "token_accuracy": weighted(correct, w)}
    if "predictions" in aux:
        rows = row_weights(batch, targets.shape[0])
        lengths = batch["target_lengths"].astype(jnp.int32)
        pred, pred_len = aux["predictions"], aux["prediction_lengths"].astype(jnp.int32)
        sums["exact_match"] = weighted(exact_match(pred, targets, lengths), rows)
        ends = jnp.take_along_axis(pred, jnp.maximum(pred_len - 1, 0)[:, None], axis=1)[:, 0]
        hyp_len = pred_len - ((ends == aux["eos_id"]) & (pred_len > 0)).astype(jnp.int32)
        stats = bleu_stats(pred, hyp_len, targets, jnp.maximum(lengths - 1, 0))
        for name, value in stats.items():
            sums[f"bleu_{name}"] = (jnp.sum(value.astype(jnp.float32) * rows), jnp.sum(rows))
    return sums


def seq2seq_derive(means: Mapping[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    """``bleu`` from the BLEU statistics and ``perplexity`` from the loss."""
    del info
    out = {"perplexity": math.exp(min(means["loss"], 700.0))}
    if "bleu_hyp_len" in means:
        stats = {k[len("bleu_") :]: v for k, v in means.items() if k.startswith("bleu_")}
        out["bleu"] = bleu_from_stats(stats)
    return out


def seq2seq_report(run, state, workdir: str, *, num_examples: int = 5) -> dict[str, Any]:
    """Metrics on the report split and a few decoded examples as text."""
    del workdir
    split = report_split(run)
    batch, out = next(predictions(run, state, split, ("predictions", "prediction_lengths")))
    src_vocab = run.info.get("source_vocab") or []
    tgt_vocab = run.info.get("target_vocab") or []

    def text(ids, vocab):
        return " ".join(vocab[i] if i < len(vocab) else str(i) for i in ids)

    examples = []
    for i in range(min(num_examples, len(batch["inputs"]))):
        src = batch["inputs"][i][: int(batch["input_lengths"][i])]
        ref = batch["targets"][i][: int(batch["target_lengths"][i])]
        hyp = out["predictions"][i][: int(out["prediction_lengths"][i])]
        examples.append(
            {
                "source": text(src, src_vocab),
                "reference": text(ref, tgt_vocab),
                "prediction": text(hyp, tgt_vocab),
            }
        )
    return {"split": split, split: run.evaluate(state, split), "examples": examples}


register(Task("seq2seq", seq2seq_metrics, seq2seq_derive, report=seq2seq_report))
