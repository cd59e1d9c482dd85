"""Text samples from a trained language model (``samples.txt``, ``rnnlab sample``).

Text is encoded with the dataset's vocabulary (``info["vocab"]``: characters for
``level == "char"``, words otherwise). Generation runs on this process's default device
from a host copy of the parameters, so only the main process needs to call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from rnnlab import parallel
from rnnlab.data.vocab import BOS_ID, UNK_ID, CharEncoder, WordEncoder
from rnnlab.models.language_model import generate


def codec(info: Mapping[str, Any]) -> tuple[Callable[[str], np.ndarray], Callable[[Any], str]]:
    """``(encode, decode)`` for the dataset's vocabulary."""
    vocab = info.get("vocab")
    if not vocab:
        raise ValueError("dataset info has no 'vocab': cannot turn samples into text")
    enc = CharEncoder(vocab) if info.get("level", "char") == "char" else WordEncoder(vocab)
    return enc.encode, lambda ids: enc.decode([int(i) for i in ids])


def default_prompt_ids(info: Mapping[str, Any], encode) -> np.ndarray:
    """A one-token prompt when none is given: a newline (characters) or ``<s>`` (words)."""
    if info.get("level", "char") == "char":
        ids = encode("\n")
        if ids.size and int(ids[0]) > 1:
            return ids
        return np.array([2], np.int32)
    return np.array([BOS_ID], np.int32)


def sample_text(
    run: Any,
    state: Any,
    *,
    prompt: str | None = None,
    length: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    num: int | None = None,
    seed: int | None = None,
) -> str:
    """Samples ``num`` continuations of ``prompt`` (defaults from ``config.sample``).

    Returns the texts, prompt included, separated by blank lines.
    """
    s = run.options.sample
    prompt = s.prompt if prompt is None else prompt
    length = int(s.length if length is None else length) or 200
    temperature = float(s.temperature if temperature is None else temperature)
    top_k = int(s.top_k if top_k is None else top_k)
    top_p = float(s.top_p if top_p is None else top_p)
    num = int(s.num if num is None else num) or 1
    seed = int(run.options.seed if seed is None else seed)
    encode, decode = codec(run.info)
    ids = encode(prompt) if prompt else default_prompt_ids(run.info, encode)
    if prompt and run.info.get("level", "char") == "char" and (ids == UNK_ID).any():
        # The model never saw these: decoding would drop them without a word.
        unknown = sorted({c for c, i in zip(prompt, ids.tolist(), strict=True) if i == UNK_ID})
        raise ValueError(
            f"prompt has characters outside the model's vocabulary: {unknown!r}; "
            "leave them out or replace them"
        )
    if ids.size == 0:
        raise ValueError(f"prompt {prompt!r} encodes to no tokens")
    params, rest = parallel.to_host((state.params, state.rest))
    model = nnx.merge(run.graphdef, params, rest)
    prompts = np.repeat(ids[None, :].astype(np.int32), num, axis=0)
    out = generate(
        model,
        prompts,
        length,
        key=jax.random.key(seed),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    texts = [decode(ids) + decode(row) for row in np.asarray(out)]
    return "\n\n".join(texts)
