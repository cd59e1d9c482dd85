"""The one line a run ends with: the task's result against its reference.

A run exists for one number (test MASE against the baselines, test accuracy against
chance, validation bits per character against a uniform guess); this line states it as the
results table does, so the last line of the terminal is the result, not a training metric.
Read from ``summary.json`` (its ``"final"`` evaluation and the task's ``"report"``) and the
dataset description.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _n(value: float) -> str:
    value = float(value)
    return f"{value:.4g}" if abs(value) >= 1e4 or (0 < abs(value) < 1e-3) else f"{value:.4f}"


def _pct(value: float) -> str:
    return f"{100 * float(value):.1f} %"


def _final(summary: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """The split and metrics of the run's last evaluation (the non-training split)."""
    final = summary.get("final") or {}
    split = next((s for s in final if s != "train"), "validation")
    return split, dict(final.get(split) or {})


def _lm(summary, info, task) -> str | None:
    split, m = _final(summary)
    vocab = info.get("vocab_size")
    uniform = f" (a uniform guess over {vocab} tokens: {_n(math.log2(vocab))})" if vocab else ""
    if "bpc" in m:
        return f"{split} bits per character {_n(m['bpc'])}{uniform}"
    if task == "copy" and "bits_per_token" in m:
        return f"{split} bits per token {_n(m['bits_per_token'])}{uniform}"
    if "perplexity" in m:
        ref = f" (a uniform guess: {vocab})" if vocab else ""
        return f"{split} perplexity {_n(m['perplexity'])}{ref}"
    return None


def _classification(summary, info, task) -> str | None:
    del task
    report = summary.get("report") or {}
    k = info.get("num_classes")
    chance = f" (chance 1/{k}: {_pct(1 / k)})" if k else ""
    if "accuracy" in report:
        n = report.get("examples")
        on = f" on {n} examples" if n else ""
        return f"{report['split']} accuracy {_pct(report['accuracy'])}{on}{chance}"
    split, m = _final(summary)
    return f"{split} accuracy {_pct(m['accuracy'])}{chance}" if "accuracy" in m else None


def _forecast(summary, info, task) -> str | None:
    del info, task
    report = summary.get("report") or {}
    model, best = report.get("model"), report.get("strongest")
    if not model:
        return None
    line = f"{report['split']} MASE {_n(model['mase'])}"
    if best and best in report:
        verdict = "beats" if model["mase"] < report[best]["mase"] else "does not beat"
        line += f" ({verdict} the strongest baseline, {best}: {_n(report[best]['mase'])})"
    return line


def _ctc(summary, info, task) -> str | None:
    del info, task
    r = summary.get("report") or {}
    if "beam_error_rate" not in r:
        return None
    return (
        f"{r['split']} label error rate {_n(r['beam_error_rate'])} by beam search "
        f"(best path {_n(r['greedy_error_rate'])}; utterances with an error "
        f"{_pct(r['beam_sequence_error_rate'])})"
    )


def _seq2seq(summary, info, task) -> str | None:
    del info, task
    r = summary.get("report") or {}
    split = r.get("split")
    m = r.get(split) or _final(summary)[1]
    split = split or _final(summary)[0]
    if "bleu" not in m:
        return None
    exact = f" (exact match {_pct(m['exact_match'])})" if "exact_match" in m else ""
    return f"{split} BLEU {_n(m['bleu'])}{exact}"


def _video(summary, info, task) -> str | None:
    del info, task
    r = summary.get("report") or {}
    split = r.get("split")
    m = r.get(split) or {}
    if "mse" not in m:
        return None
    copy = m.get("copy_last_mse")
    ref = f" (copying the last seen frame: {_n(copy)})" if copy is not None else ""
    return f"{split} mse per pixel {_n(m['mse'])}{ref}"


def _regression(summary, info, task) -> str | None:
    del info, task
    split, m = _final(summary)
    return f"{split} mse {_n(m['mse'])}" if "mse" in m else None


_HEADLINES = {
    "lm": _lm,
    "copy": _lm,
    "classification": _classification,
    "tagging": _classification,  # accuracy over the valid steps
    "forecast": _forecast,
    "ctc": _ctc,
    "seq2seq": _seq2seq,
    "video": _video,
    "regression": _regression,
}


def headline(summary: Mapping[str, Any], task: str, info: Mapping[str, Any]) -> str:
    """``"result: <split> <metric> <value> (<reference>)"`` for ``task``'s run; falls back
    to the last evaluation's loss."""
    make = _HEADLINES.get(task)
    line = make(summary, info, task) if make else None
    if line is None:
        split, m = _final(summary)
        line = f"{split} loss {_n(m['loss'])}" if "loss" in m else "no evaluation"
    return f"result: {line}"
