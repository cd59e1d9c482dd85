"""Batch inference on a file: ``rnnlab predict --workdir W --input FILE --output FILE``.

The input is read like the run's training data (:mod:`rnnlab.data.sequence_files`: the
same table columns, the same standardisation with the training statistics recorded in
``dataset_info.json``); labels in it are ignored. The output, by its extension:

- ``.csv``: one row per input sequence, ``id``, ``prediction`` and, for classification,
  ``p_<class>`` per class (softmax probabilities); for regression ``prediction_<k>`` per
  output.
- ``.npz``: ``ids``, ``predictions`` (class ids, or values ``[N, K]``) and, for
  classification, ``probabilities`` ``[N, C]`` and ``classes``.

Tagging writes a row per time step (``.csv``: ``id``, ``time``, ``prediction``,
``p_<class>``; ``.npz``: ``ids``, ``lengths``, and ``predictions`` / ``probabilities`` of
all steps one sequence after another).

Forecasting runs read a series file (``.csv``, ``.npy``, ``.npz``, as ``csv_series``) and
write forecasts with quantiles from the end of the file, or from every origin
(:mod:`rnnlab.train.predict_forecast`): ``.csv`` a row per origin and step ahead, ``.npz``
``origins``, ``forecasts``, ``quantiles``, ``levels``, ``series``.

Translation, speech and language-model runs write text
(:mod:`rnnlab.train.predict_decoders`): greedy translations of the sources of a
``.tsv``/``.jsonl``/``.txt`` file, best-path CTC transcripts of the audio files of a
manifest, or continuations of the prompts of a ``.txt`` file (one a line).

The output is written whole at the end (a temporary file renamed), so an error leaves no
partial file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from rnnlab.train import files
from rnnlab.train import predict_decoders as decoders

OUTPUT_FORMATS = {
    "classification": (".csv", ".npz"),
    "regression": (".csv", ".npz"),
    "tagging": (".csv", ".npz"),
    "seq2seq": (".tsv", ".jsonl", ".txt"),
    "ctc": (".tsv", ".jsonl", ".txt"),
    "lm": (".jsonl", ".txt"),
    "forecast": (".csv", ".npz"),
}


def _forward(model: nnx.Module) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, batch):
        outputs, _ = nnx.merge(graphdef, state)(batch, train=False)
        return outputs

    return lambda batch: np.asarray(run(state, batch))


def predict_sequences(model, info: dict[str, Any], config, records, *, batch_size: int, progress):
    """Outputs ``[N, C]`` (logits) or ``[N, K]`` of ``records``, in their order."""
    from rnnlab.data import own

    data = config.data
    mean = np.asarray(info.get("mean", 0.0), np.float32)
    std = np.asarray(info.get("std", 1.0), np.float32)
    standardize = bool(data.get("standardize") or False)
    features = int(info["input_features"])
    seqs = []
    for i, seq in enumerate(records.sequences):
        if seq.shape[1] != features:
            raise ValueError(
                f"{records.where}: record {records.ids[i]!r} has {seq.shape[1]} features, the "
                f"model was trained on {features}"
            )
        seq = np.asarray(seq, np.float32)
        seqs.append((seq - mean) / std if standardize else seq)
    forward = _forward(model)
    width = int(info.get("output_features") or 1)
    outs = []
    pad_multiple = int(data.get("pad_multiple") or 8)
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        dummy = {
            "classification": lambda s: 0,
            "tagging": lambda s: np.zeros(len(s), np.int32),
            "regression": lambda s: np.zeros(width, np.float32),
        }[info["task"]]
        examples = [(s, dummy(s)) for s in chunk] + [None] * (batch_size - len(chunk))
        longest = max(len(s) for s in chunk)
        batch = own.collate(
            examples,
            max_len=max(longest, int(info["seq_len"])),
            pad_multiple=pad_multiple,
            fixed=False,
            features=features,
            task=info["task"],
        )
        out = forward(batch)
        if info["task"] == "tagging":  # an output per valid step of each sequence
            outs.extend(out[i, : len(s)] for i, s in enumerate(chunk))
        else:
            outs.append(out[: len(chunk)])
        progress(len(chunk))
    return outs if info["task"] == "tagging" else np.concatenate(outs, axis=0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _write(output: str, columns: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> None:
    tmp = f"{output}.tmp{os.getpid()}"
    try:
        if "text" in arrays:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(arrays["text"])
        elif output.endswith(".csv"):
            import pandas as pd

            pd.DataFrame(columns).to_csv(tmp, index=False)
        else:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class PredictInputError(ValueError):
    """A request ``rnnlab predict`` cannot serve: its input file, workdir or options (the
    command exits 2, as for any bad input)."""


def predict_file(
    workdir: str,
    input_path: str,
    output_path: str,
    *,
    checkpoint: str | int = "best",
    batch_size: int | None = None,
    show_progress: bool = True,
    origins: str = "last",
    quantiles: list[float] | None = None,
) -> dict[str, Any]:
    """Predicts every sequence of ``input_path`` with the run in ``workdir`` and writes
    ``output_path`` (module docstring). Returns ``{"records", "output", "step"}``.

    ``origins`` (``"last"`` or ``"all"``) and ``quantiles`` (levels) apply to forecasting
    runs only (:mod:`rnnlab.train.predict_forecast`)."""
    from rnnlab.train import export

    saved, dinfo, task = _check_request(workdir, output_path, origins, quantiles)
    sources, records = _read_inputs(task, input_path, saved, dinfo, origins)
    model, minfo = export.load(workdir, checkpoint)
    size = int(batch_size or minfo.config.eval.batch_size or 64)
    if task == "forecast":
        return _forecast(model, minfo, sources, output_path, size, show_progress, origins,
                         quantiles)  # fmt: skip
    from tqdm import tqdm

    total = len(sources) if records is None else len(records)
    with tqdm(total=total, unit="seq", disable=not show_progress, leave=False) as bar:
        out = _predict(task, model, minfo, saved.get("data", {}), sources, records, size, bar)
    ext = os.path.splitext(output_path)[1].lower()
    if task in ("seq2seq", "ctc", "lm"):
        if task == "ctc":
            sources = [file for file, _ in sources]
        columns, arrays = {}, {"text": decoders.text_lines(ext, sources, out, task)}
    else:
        columns, arrays = _sequence_outputs(task, minfo.dataset, records, out)
    _write(output_path, columns, arrays)
    return {"records": total, "output": output_path, "step": minfo.step}


def _check_request(workdir, output_path, origins, quantiles) -> tuple[dict, dict, str]:
    """The run's saved config, its dataset info and its task, once the request is known to
    fit them (a one-line ValueError otherwise, before any model is loaded)."""
    from rnnlab.train import export

    if not files.exists(files.join(workdir, export.CONFIG_FILE)):
        raise ValueError(f"workdir {workdir} holds no run (no config.json)")
    saved = files.read_json(files.join(workdir, export.CONFIG_FILE))
    dinfo = files.read_json(files.join(workdir, export.DATASET_INFO_FILE)) or {}
    task = dinfo.get("task")
    if task not in OUTPUT_FORMATS:
        raise ValueError(
            f"rnnlab predict serves the tasks {sorted(OUTPUT_FORMATS)}; the run in {workdir} "
            f"is a {task!r} task"
        )
    ext = os.path.splitext(output_path)[1].lower()
    if ext not in OUTPUT_FORMATS[task]:
        raise ValueError(
            f"--output must end in one of {OUTPUT_FORMATS[task]} for a {task} run, received "
            f"{output_path!r}"
        )
    parent = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(parent):
        raise ValueError(f"--output directory {parent} does not exist")
    if task != "forecast" and (origins != "last" or quantiles is not None):
        raise ValueError(
            f"--origins and --quantiles apply to forecasting runs, not to a {task} run"
        )
    return saved, dinfo, task


def _read_inputs(task, input_path, saved, dinfo, origins) -> tuple[Any, Any]:
    """``(sources, records)`` of the input file in the task's own format: records for the
    sequence tasks, sources for the others (read and checked before the model is loaded)."""
    data = saved.get("data", {})
    if task == "forecast":
        from rnnlab.train import predict_forecast

        if origins not in predict_forecast.ORIGINS:
            raise ValueError(
                f"--origins must be one of {list(predict_forecast.ORIGINS)}, received {origins!r}"
            )
        return predict_forecast.read_series(input_path, data, dinfo), None
    if task == "seq2seq":
        return decoders.sources(input_path, data), None
    if task == "ctc":
        return decoders.audio_files(input_path), None
    if task == "lm":
        return decoders.prompts(input_path), None
    from rnnlab.data import own, sequence_files

    records = sequence_files.read(input_path, own.table_columns(data), need_labels=False)
    if not len(records):
        raise ValueError(f"{input_path}: holds no sequences")
    return None, records


def _predict(task, model, minfo, data, sources, records, size, bar) -> Any:
    """The model's outputs for every input, in order, advancing the progress ``bar``."""
    info, config = minfo.dataset, minfo.config
    if task == "seq2seq":
        return decoders.translate(model, info, sources, batch_size=size, progress=bar.update)
    if task == "ctc":
        return decoders.transcribe(model, info, data, sources, batch_size=size, progress=bar.update)
    if task == "lm":
        return decoders.continue_texts(model, info, config, sources, progress=bar.update)
    return predict_sequences(model, info, config, records, batch_size=size, progress=bar.update)


def _forecast(model, minfo, series, output_path, size, show_progress, origins, quantiles):
    from tqdm import tqdm

    from rnnlab.train import predict_forecast as forecast

    values, names = series
    total = len(values) - int(minfo.dataset["seq_len"]) + 1 if origins == "all" else 1
    with tqdm(total=total, unit="window", disable=not show_progress, leave=False) as bar:
        result = forecast.predict_series(
            model, minfo, values, origins=origins, quantiles=quantiles, batch_size=size,
            progress=bar.update,
        )  # fmt: skip
    columns, arrays = forecast.outputs(result, names)
    _write(output_path, columns, arrays)
    return {"records": len(result["origins"]), "unit": "origins", "output": output_path,
            "step": minfo.step}  # fmt: skip


def _sequence_outputs(task, info, records, out):
    ids = np.asarray([str(i) for i in records.ids])
    if task == "tagging":  # one row per time step
        probs = _softmax(np.concatenate(out, axis=0))
        pred = probs.argmax(axis=-1)
        names = list(info.get("class_names") or range(probs.shape[1]))
        lengths = np.asarray([len(o) for o in out])
        columns = {
            "id": np.repeat(ids, lengths),
            "time": np.concatenate([np.arange(n) for n in lengths]),
            "prediction": np.asarray([names[p] for p in pred]),
            **{f"p_{n}": probs[:, c] for c, n in enumerate(names)},
        }
        arrays = {
            "ids": ids,
            "lengths": lengths,
            "predictions": pred,
            "probabilities": probs,
            "classes": np.asarray([str(n) for n in names]),
        }
        return columns, arrays
    if task == "classification":
        probs = _softmax(out)
        pred = probs.argmax(axis=-1)
        names = list(info.get("class_names") or range(probs.shape[1]))
        columns = {"id": ids, "prediction": np.asarray([names[p] for p in pred])}
        columns.update({f"p_{n}": probs[:, c] for c, n in enumerate(names)})
        arrays = {
            "ids": ids,
            "predictions": pred,
            "probabilities": probs,
            "classes": np.asarray([str(n) for n in names]),
        }
        return columns, arrays
    out = out.reshape(len(records), -1).astype(np.float64)
    columns = {"id": ids, **{f"prediction_{k}": out[:, k] for k in range(out.shape[1])}}
    if out.shape[1] == 1:
        columns = {"id": ids, "prediction": out[:, 0]}
    return columns, {"ids": ids, "predictions": out}
