"""Task metrics: sequence (exact match, edit distance, BLEU), forecasting (MAE, RMSE, MASE),
images (SSIM) and per-class classification metrics.

Array metrics are pure ``jax.numpy`` and jittable; the string and alignment metrics (edit
distance, BLEU) run on the host. BLEU needs ``sacrebleu`` (the ``train`` extra), imported
only when called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.models.forecaster import seasonal_naive  # noqa: F401  (re-exported)

Array = jax.Array


# -- sequences ------------------------------------------------------------------------------
def exact_match(predictions: Array, targets: Array, target_lengths: Array) -> Array:
    """Bool ``[B]``: the prediction equals the target on its first ``target_lengths`` tokens
    and the prediction is no longer (its next token, if any, is the target's padding).

    Both arrays are ``[B, T]`` padded the same way (e.g. EOS-terminated, 0-padded); only
    positions up to the target length plus one are compared, so a longer padded width on
    either side does not matter.
    """
    width = max(predictions.shape[1], targets.shape[1])
    pad = lambda x: jnp.pad(x, ((0, 0), (0, width - x.shape[1])))
    p, t = pad(predictions.astype(jnp.int32)), pad(targets.astype(jnp.int32))
    upto = jnp.arange(width)[None, :] <= target_lengths.astype(jnp.int32)[:, None]
    return jnp.all((p == t) | ~upto, axis=1)


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning
    ``hyp`` into ``ref`` (Levenshtein 1966), by the Wagner-Fischer dynamic programme."""
    hyp, ref = list(hyp), list(ref)
    row = np.arange(len(ref) + 1)
    for i, h in enumerate(hyp, start=1):
        prev_diag, row[0] = row[0], i
        for j, r in enumerate(ref, start=1):
            cur = min(row[j] + 1, row[j - 1] + 1, prev_diag + (h != r))
            prev_diag, row[j] = row[j], cur
    return int(row[-1])


def error_rate(hyps: Sequence[Sequence], refs: Sequence[Sequence]) -> float:
    """Corpus error rate ``sum_i ED(h_i, r_i) / sum_i |r_i|`` (CER on characters, TER/WER on
    tokens or words)."""
    if len(hyps) != len(refs):
        raise ValueError(
            f"hyps and refs must have the same length, got {len(hyps)} and {len(refs)}"
        )
    edits = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    total = sum(len(r) for r in refs)
    return edits / max(total, 1)


def edit_distances(hyp: Array, hyp_lengths: Array, ref: Array, ref_lengths: Array) -> Array:
    """Levenshtein distances ``[B]`` between padded token arrays, in JAX (jittable).

    The Wagner-Fischer row for hyp token ``i`` is ``D_i[j] = min(D_{i-1}[j] + 1,
    D_{i-1}[j-1] + [h_i != r_j], D_i[j-1] + 1)``; the last term is a running minimum,
    ``D_i[j] = j + min_{k <= j} (a_k - k)``, so each row is one vector operation.
    """
    ref_pos = jnp.arange(ref.shape[1] + 1, dtype=jnp.int32)

    def one(h, hn, r, rn):
        def row(prev, xs):
            i, tok = xs
            sub = prev[:-1] + (tok != r).astype(jnp.int32)
            a = jnp.concatenate([i[None], jnp.minimum(prev[1:] + 1, sub)])
            cur = ref_pos + jax.lax.cummin(a - ref_pos)
            return jnp.where(i <= hn, cur, prev), None

        steps = jnp.arange(1, h.shape[0] + 1, dtype=jnp.int32)
        last, _ = jax.lax.scan(row, ref_pos, (steps, h))
        return last[rn]

    return jax.vmap(one)(
        hyp.astype(jnp.int32),
        hyp_lengths.astype(jnp.int32),
        ref.astype(jnp.int32),
        ref_lengths.astype(jnp.int32),
    )


def bleu_stats(
    hyp: Array, hyp_lengths: Array, ref: Array, ref_lengths: Array, max_order: int = 4
) -> dict[str, Array]:
    """Per-sentence sufficient statistics of BLEU for padded token arrays, in JAX.

    ``correct_n``: clipped n-gram matches ``sum_g min(count_hyp(g), count_ref(g))``;
    ``total_n``: hyp n-grams; ``hyp_len``, ``ref_len``. Corpus BLEU is a function of their
    sums (:func:`bleu_from_stats`), so they can be summed over batches and devices.
    """
    hyp, ref = hyp.astype(jnp.int32), ref.astype(jnp.int32)
    lh, lr = hyp_lengths.astype(jnp.int32), ref_lengths.astype(jnp.int32)
    pos_h, pos_r = jnp.arange(hyp.shape[1]), jnp.arange(ref.shape[1])

    def shifted(eq, n):
        """``eq[i + n, j + n]`` (False past the end)."""
        return jnp.pad(eq, ((0, 0), (0, n), (0, n)))[:, n:, n:]

    eq_hh0 = hyp[:, :, None] == hyp[:, None, :]
    eq_hr0 = hyp[:, :, None] == ref[:, None, :]
    eq_hh, eq_hr = eq_hh0, eq_hr0
    out = {}
    earlier = pos_h[None, :] < pos_h[:, None]  # [i, j]: j < i
    for n in range(1, max_order + 1):
        if n > 1:
            eq_hh = eq_hh & shifted(eq_hh0, n - 1)
            eq_hr = eq_hr & shifted(eq_hr0, n - 1)
        valid_h = pos_h[None, :] + n <= lh[:, None]  # [B, i]
        valid_r = pos_r[None, :] + n <= lr[:, None]
        same_h = eq_hh & valid_h[:, None, :]
        count_h = jnp.sum(same_h, axis=2)
        count_r = jnp.sum(eq_hr & valid_r[:, None, :], axis=2)
        # Each distinct n-gram is counted once, at its first occurrence in the hypothesis.
        first = valid_h & ~jnp.any(same_h & earlier[None], axis=2)
        out[f"correct_{n}"] = jnp.sum(jnp.where(first, jnp.minimum(count_h, count_r), 0), axis=1)
        out[f"total_{n}"] = jnp.maximum(lh - n + 1, 0)
    out["hyp_len"], out["ref_len"] = lh, lr
    return out


def bleu_from_stats(stats: dict[str, float], max_order: int = 4) -> float:
    """Corpus BLEU in percent (Papineni et al. 2002) from summed :func:`bleu_stats`.

    ``BLEU = BP exp((1/N) sum_n log p_n)`` with ``p_n = sum correct_n / sum total_n`` and the
    brevity penalty ``BP = min(1, exp(1 - r / c))`` (``c``, ``r``: hypothesis and reference
    lengths).

    Unsmoothed (sacrebleu's ``smooth_method="none"``, multi-bleu.perl): 0 when any order has
    no match. Every term is a ratio of sums, so the means of the statistics over any common
    weight (what the training engine aggregates) give the same score.
    """
    correct = [float(stats[f"correct_{n}"]) for n in range(1, max_order + 1)]
    total = [float(stats[f"total_{n}"]) for n in range(1, max_order + 1)]
    sys_len, ref_len = float(stats["hyp_len"]), float(stats["ref_len"])
    if min(correct) <= 0 or min(total) <= 0 or sys_len <= 0:
        return 0.0
    bp = 1.0 if sys_len >= ref_len else math.exp(1 - ref_len / sys_len)
    log_p = sum(math.log(c / t) for c, t in zip(correct, total, strict=True)) / max_order
    return 100.0 * bp * math.exp(log_p)


def bleu(hyps: Sequence, refs: Sequence, *, smooth_method: str = "exp") -> float:
    """Corpus BLEU (Papineni et al. 2002) by sacrebleu, in percent, one reference each.

    Items are strings (tokenised by sacrebleu's default ``13a``) or sequences of token ids,
    which are joined by spaces and scored without further tokenisation. ``smooth_method``
    is sacrebleu's (``"exp"`` its default, ``"none"`` as :func:`bleu_from_stats`).
    """
    import sacrebleu  # the train extra; kept out of the core's import time

    def text(items):
        return [x if isinstance(x, str) else " ".join(str(int(t)) for t in x) for x in items]

    if len(hyps) != len(refs):
        raise ValueError(
            f"hyps and refs must have the same length, got {len(hyps)} and {len(refs)}"
        )
    tokenize = "13a" if hyps and isinstance(hyps[0], str) else "none"
    score = sacrebleu.corpus_bleu(
        text(hyps), [text(refs)], tokenize=tokenize, smooth_method=smooth_method
    )
    return float(score.score)


# -- forecasting ----------------------------------------------------------------------------
def mae(y_true: Array, y_pred: Array) -> Array:
    """Mean absolute error over all elements."""
    return jnp.mean(jnp.abs(y_true - y_pred))


def rmse(y_true: Array, y_pred: Array) -> Array:
    """Root mean squared error over all elements."""
    return jnp.sqrt(jnp.mean(jnp.square(y_true - y_pred)))


def seasonal_scale(history: Array, period: int) -> Array:
    """In-sample MAE of the one-step seasonal-naive forecast, ``mean_t |y_t - y_{t-m}|``,
    per series ``[...]`` for ``history`` ``[..., L, F]`` (needs ``L > period``)."""
    if history.shape[-2] <= period:
        raise ValueError(
            f"history must be longer than the period {period}, got length {history.shape[-2]}"
        )
    diffs = jnp.abs(history[..., period:, :] - history[..., :-period, :])
    return jnp.mean(diffs, axis=(-2, -1))


def mase(
    y_true: Array,
    y_pred: Array,
    *,
    period: int = 1,
    history: Array | None = None,
    scale: Array | float | None = None,
) -> Array:
    """Mean absolute scaled error per series ``[...]`` (Hyndman & Koehler 2006).

    .. math:: \\mathrm{MASE} = \\frac{\\frac1H \\sum_h |y_h - \\hat y_h|}
        {\\frac{1}{L-m} \\sum_{t>m} |y_t - y_{t-m}|}

    The denominator is :func:`seasonal_scale` of ``history`` unless ``scale`` is given (for
    example the scale of the whole training series). Values below 1 beat the in-sample
    seasonal-naive forecast. ``y_true``, ``y_pred``: ``[..., H, F]``.
    """
    if scale is None:
        if history is None:
            raise ValueError("mase needs either history or scale")
        scale = seasonal_scale(history, period)
    err = jnp.mean(jnp.abs(y_true - y_pred), axis=(-2, -1))
    return err / jnp.maximum(jnp.asarray(scale, err.dtype), jnp.finfo(err.dtype).tiny)


# -- images ---------------------------------------------------------------------------------
def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _valid_filter_matrix(n: int, g: np.ndarray) -> np.ndarray:
    """``M`` with ``(M x)_i = sum_k g_k x_{i+k}``: a 'valid' correlation as a matrix."""
    m = np.zeros((n - len(g) + 1, n), np.float32)
    for i in range(m.shape[0]):
        m[i, i : i + len(g)] = g
    return m


def ssim(
    x: Array,
    y: Array,
    *,
    data_range: float = 1.0,
    window_size: int = 7,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Array:
    """Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004) per image.

    .. math:: \\mathrm{SSIM}(x, y) = \\frac{(2\\mu_x\\mu_y + C_1)(2\\sigma_{xy} + C_2)}
        {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)},
        \\quad C_i = (k_i L)^2

    with local statistics under a Gaussian window (``window_size`` taps, ``sigma``) over
    the positions where the window fits, averaged over positions and channels. ``x``,
    ``y``: ``[..., H, W, C]``; returns ``[...]``. The paper uses an 11-tap window; 7 suits
    the small frames of this project.
    """
    if x.shape != y.shape or x.ndim < 3:
        raise ValueError(
            f"x and y must be images [..., H, W, C] of one shape, got {x.shape} and {y.shape}"
        )
    h, w = x.shape[-3], x.shape[-2]
    if min(h, w) < window_size:
        raise ValueError(f"window_size must be <= image size {(h, w)}, got {window_size}")
    g = gaussian_window(window_size, sigma)
    mh, mw = jnp.asarray(_valid_filter_matrix(h, g)), jnp.asarray(_valid_filter_matrix(w, g))
    blur = lambda z: jnp.einsum("ih,...hwc,jw->...ijc", mh, z, mw)
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return jnp.mean(num / den, axis=(-3, -2, -1))


# -- classification -------------------------------------------------------------------------
def confusion_matrix(
    labels: Array, predictions: Array, num_classes: int, weights: Array | None = None
) -> Array:
    """``C[i, j]`` = (weighted) count of examples of class ``i`` predicted as ``j``."""
    w = jnp.ones(labels.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    flat = labels.astype(jnp.int32) * num_classes + predictions.astype(jnp.int32)
    counts = (
        jnp.zeros(num_classes * num_classes, jnp.float32).at[flat.reshape(-1)].add(w.reshape(-1))
    )
    return counts.reshape(num_classes, num_classes)


def per_class_metrics(confusion: Array) -> dict[str, Array]:
    """Precision, recall and F1 per class, and their macro averages, from a confusion matrix.

    A class never predicted has precision 0 and one never present recall 0; macro averages
    run over all classes (scikit-learn's ``zero_division=0`` convention).
    """
    tp = jnp.diagonal(confusion)
    predicted, actual = jnp.sum(confusion, axis=0), jnp.sum(confusion, axis=1)
    safe = lambda a, b: jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)
    precision, recall = safe(tp, predicted), safe(tp, actual)
    f1 = safe(2 * precision * recall, precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_precision": jnp.mean(precision),
        "macro_recall": jnp.mean(recall),
        "macro_f1": jnp.mean(f1),
    }
