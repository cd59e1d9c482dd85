"""Which logged metrics a reader is shown.

``metrics.jsonl`` and ``summary.json`` keep everything a run measures; the terminal and the
plots show the metrics a reader uses. Left out there: the sufficient statistics other
metrics are computed from (BLEU's n-gram counts and lengths), and metrics that restate
another one shown beside them (``error`` is ``1 - accuracy``; ``bits_per_token`` is
``bpc`` where the tokens are characters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

# Metric -> the metric that makes it redundant when both are logged.
RESTATES = {"error": "accuracy", "bits_per_token": "bpc"}
COUNT_PREFIXES = ("bleu_",)  # bleu_correct_n, bleu_total_n, bleu_hyp_len, bleu_ref_len

V = TypeVar("V")


def shown_names(names: Iterable[str]) -> set[str]:
    """The subset of ``names`` worth showing a reader (module docstring)."""
    names = set(names)
    return {n for n in names if not n.startswith(COUNT_PREFIXES) and RESTATES.get(n) not in names}


def for_readers(metrics: Mapping[str, V]) -> dict[str, V]:
    """``metrics`` without counts and restated metrics, in their order."""
    keep = shown_names(metrics)
    return {k: v for k, v in metrics.items() if k in keep}
