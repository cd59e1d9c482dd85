"""Language modelling (task ``"lm"``) and the copy-memory task (``"copy"``): token
cross-entropy and accuracy; perplexity and bits per token (per character at character level);
a language model's end-of-run text sample."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rnnlab.tasks.common import Sums, token_cross_entropy, weights
from rnnlab.tasks.registry import Task, register


def token_metrics(outputs, aux, batch) -> Sums:
    """Cross-entropy (``loss``, nats) and ``accuracy`` of next-token logits ``[B, T, V]``."""
    del aux
    targets = batch["targets"]
    return token_cross_entropy(outputs, targets, weights(batch, targets.shape))


def lm_derive(means: dict[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    """``perplexity = exp(loss)`` and ``bits_per_token = loss / ln 2`` (``bpc`` for characters)."""
    loss = means["loss"]
    out = {"perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2)}
    if info.get("level", info.get("token_level")) in ("char", "character", "byte"):
        out["bpc"] = out["bits_per_token"]
    return out


def sample(run, state) -> str:
    """The end-of-run text sample (``samples.txt``): continuations of ``sample.prompt`` with
    the ``sample`` options (:func:`rnnlab.tasks.sampling.sample_text`)."""
    # Imported here: the vocabulary comes with the data package, which tasks need only here.
    from rnnlab.tasks.sampling import sample_text

    return sample_text(run, state)


register(Task("lm", token_metrics, lm_derive, sample=sample))
register(
    Task("copy", token_metrics, lambda means, info: {"bits_per_token": means["loss"] / math.log(2)})
)
