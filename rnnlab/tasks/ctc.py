"""Speech recognition with CTC (task ``"ctc"``): the CTC loss, the best-path label error rate,
and a report with prefix beam search beside best-path decoding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.models.ctc import ctc_greedy_decode, ctc_loss, prefix_beam_search, strip
from rnnlab.tasks.common import Array, Sums, row_weights, weighted
from rnnlab.tasks.evaluation import option, predictions, report_split
from rnnlab.tasks.registry import Task, register
from rnnlab.tasks.scores import edit_distances, error_rate


def ctc_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """CTC negative log-likelihood per utterance (``loss``), the best-path ``error_rate``
    (edit distance over reference labels: CER for characters, TER for tokens) and
    ``sequence_accuracy``."""
    labels, label_len = batch["targets"], batch["target_lengths"].astype(jnp.int32)
    rows = row_weights(batch, labels.shape[0])
    lengths = aux["logit_lengths"]
    blank = int(aux.get("blank_id", 0))
    nll = ctc_loss(outputs, lengths, labels, label_len, blank_id=blank)
    hyp, hyp_len = ctc_greedy_decode(outputs, lengths, blank_id=blank)
    edits = edit_distances(hyp, hyp_len, labels, label_len)
    return {
        "loss": weighted(nll, rows),
        "error_rate": (
            jnp.sum(edits.astype(jnp.float32) * rows),
            jnp.sum(label_len.astype(jnp.float32) * rows),
        ),
        "sequence_accuracy": weighted(edits == 0, rows),
    }


def ctc_report(run, state, workdir: str, *, beam_width: int = 8) -> dict[str, Any]:
    """Best-path and prefix-beam-search label error rates on the report split."""
    del workdir
    split = report_split(run)
    limit = int(option(run.config, "report", "max_examples", 1000))
    greedy, beam, refs = [], [], []
    blank = int(run.info.get("blank_id", 0))
    for batch, out in predictions(run, state, split, ("logit_lengths",)):
        logits, lengths = out["outputs"], out["logit_lengths"]
        log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
        for lp, n in zip(log_probs, lengths, strict=True):
            frames = lp[: int(n)]
            greedy.append(_best_path(frames, blank))
            beam.append(prefix_beam_search(frames, beam_width=beam_width, blank_id=blank)[0][0])
        refs.extend(strip(batch["targets"], batch["target_lengths"]))
        if len(refs) >= limit:
            break
    return {
        "split": split,
        "examples": len(refs),
        "greedy_error_rate": error_rate(greedy, refs),
        "beam_error_rate": error_rate(beam, refs),
        "beam_width": beam_width,
    }


def _best_path(log_probs: np.ndarray, blank: int) -> tuple[int, ...]:
    best = np.argmax(log_probs, axis=-1)
    keep = (best != blank) & np.concatenate([[True], best[1:] != best[:-1]])
    return tuple(int(s) for s in best[keep])


register(Task("ctc", ctc_metrics, best_metric="error_rate", report=ctc_report))
