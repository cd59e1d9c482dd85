"""The results table: reading a run's numbers back and writing ``experiments/README.md``.

Pure functions over plain data, so that tests can feed them fixture summaries:

- :func:`lookup` reads ``"<file>:<dotted.key>"`` from a run's files;
- :func:`record_from_run` turns a finished run into the record kept in ``results.json``;
- :func:`render` writes the Markdown table from the rows and their records, one line per
  row, saying why where a row has no number.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.results.row_types import Baseline, Row

COLUMNS = (
    "Experiment",
    "Dataset",
    "Model",
    "Our result",
    "Reference or baseline",
    "Reached",
    "Command",
    "Hardware",
    "Steps",
    "Wall time",
    "Figures",
)


# -- reading runs ----------------------------------------------------------------------------
def read_run_files(workdir: str) -> dict[str, Any]:
    """``{"summary": {...}, "eval_test": {...}, ...}`` for the JSON files a run wrote."""
    out = {}
    for name in sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []:
        if name == "summary.json" or (name.startswith("eval_") and name.endswith(".json")):
            with open(os.path.join(workdir, name)) as f:
                out[name[: -len(".json")]] = json.load(f)
    return out


def lookup(files: Mapping[str, Any], path: str) -> Any:
    """The value at ``"<file>:<dotted.key>"`` in ``files``; a ``KeyError`` names what is
    missing."""
    name, sep, dotted = path.partition(":")
    if not sep or not dotted:
        raise ValueError(f"path must look like '<file>:<dotted.key>', got {path!r}")
    if name not in files:
        raise KeyError(f"{name}.json not written")
    node = files[name]
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"{name}.json has no {dotted!r}")
        node = node[part]
    return node


def record_from_run(row: Row, files: Mapping[str, Any]) -> dict[str, Any]:
    """What ``results.json`` keeps of one finished run of ``row``: the metric, the same-run
    baselines, steps, the training wall time, the parameter count and any sample."""
    summary = files.get("summary", {})
    record: dict[str, Any] = {
        "metric": float(lookup(files, row.metric.path)),
        "baselines": {
            b.label: float(lookup(files, b.path))
            for b in row.baselines
            if b.path and not b.path.startswith("row:")
        },
        "steps": summary.get("steps"),
        "train_wall_time_s": summary.get("wall_time_s"),
        "parameters": summary.get("parameters"),
        "stop_reason": summary.get("stop_reason"),
    }
    if row.eval_split:
        record["checkpoint_step"] = lookup(files, f"eval_{row.eval_split}:step")
    if row.extras:
        record["extras"] = {e.label: float(lookup(files, e.path)) * e.scale for e in row.extras}
    if summary.get("sample"):
        record["sample"] = summary["sample"]
    return record


# -- formatting ------------------------------------------------------------------------------
def fmt_value(value: float | None, *, percent: bool = False, digits: int = 4) -> str:
    """``0.9731`` -> ``"97.3 %"`` (percent) or ``"0.9731"``; ``None``/NaN -> ``"—"``."""
    if value is None or value != value:
        return "—"
    if percent:
        return f"{100 * value:.1f} %"
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.{max(digits - 2, 1)}e}"
    return f"{value:.{digits}f}"


def fmt_duration(seconds: float | None) -> str:
    """``754.2`` -> ``"12 min 34 s"``."""
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s:02d} s" if m else f"{s} s"


def baseline_value(b: Baseline, record: Mapping[str, Any], records: Mapping[str, Any]):
    """The number of ``b`` for a row whose record is ``record`` (``None`` if unknown)."""
    if b.value is not None:
        return b.value
    if b.path.startswith("row:"):
        other = records.get(b.path[4:], {})
        return other.get("metric") if other.get("status") == "ok" else None
    return record.get("baselines", {}).get(b.label)


def beats(metric: float, other: float, better: str) -> bool:
    return metric <= other if better == "min" else metric >= other


def verdict(row: Row, record: Mapping[str, Any], records: Mapping[str, Any]) -> str:
    """``"yes"``/``"no"`` against the target baselines, plus ``solved`` where defined."""
    metric = record.get("metric")
    if record.get("status") != "ok" or metric is None:
        return "—"
    parts = []
    if row.solved_below is not None:
        solved = metric < row.solved_below
        parts.append(
            f"{'solved' if solved else 'not solved'} (< {fmt_value(row.solved_below, digits=3)})"
        )
    for b in row.baselines:
        if not b.target:
            continue
        value = baseline_value(b, record, records)
        if value is None:
            parts.append(f"{b.label}: unknown")
            continue
        ok = beats(metric, value, row.metric.better)
        who = f" ({b.source})" if b.source else ""
        parts.append(f"{'yes' if ok else 'no'}: {'beats' if ok else 'misses'} {b.label}{who}")
    if row.control and parts:
        parts.append("a control, expected to miss")
    return "; ".join(parts) or "—"


def references(row: Row, record: Mapping[str, Any], records: Mapping[str, Any]) -> str:
    m = row.metric
    out = []
    for b in row.baselines:
        value = baseline_value(b, record, records)
        who = f" ({b.source})" if b.source else ""
        out.append(f"{b.label}{who}: {fmt_value(value, percent=m.percent, digits=m.digits)}")
    return "<br>".join(out) or "—"


def command_text(row: Row) -> str:
    """The row's ``rnnlab`` commands as inline code, one per line of the cell."""
    return "<br>".join(f"`{shlex.join(['rnnlab', *c])}`" for c in row.commands())


def why_missing(row: Row, record: Mapping[str, Any] | None) -> str:
    """The text in place of a number for a row without a successful run."""
    if record and record.get("status") == "failed":
        return f"failed: {record.get('error', 'unknown error')}"
    if row.tier == "accelerator":
        return "not run: needs an accelerator and data this machine cannot fetch (see note)"
    what = "not run yet" if row.tier == "make" else "not run yet (a long CPU row)"
    return f"{what}: `python -m experiments.results --only {row.key}`"


def result_cell(row: Row, record: Mapping[str, Any] | None) -> str:
    if not record or record.get("status") != "ok":
        return why_missing(row, record)
    m = row.metric
    text = f"**{fmt_value(record['metric'], percent=m.percent, digits=m.digits)}** {m.label}"
    repeat = record.get("repeat")
    if repeat:
        same = "identical" if repeat.get("identical") else "differs: " + fmt_value(repeat["metric"])
        text += f" (rerun: {same})"
    return text


def render_row(row: Row, record: Mapping[str, Any] | None, records: Mapping[str, Any]) -> str:
    record = record or {}
    ok = record.get("status") == "ok"
    figures = " ".join(
        f"[{os.path.splitext(os.path.basename(f))[0].removeprefix(row.key + '-')}]({f})"
        for f in record.get("figures", [])
    )
    cells = [
        row.experiment,
        row.dataset,
        row.model,
        result_cell(row, record),
        references(row, record, records),
        verdict(row, record, records),
        command_text(row),
        record.get("hardware", "—") if ok else "—",
        str(record.get("steps", "—")) if ok else "—",
        fmt_duration(record.get("wall_time_s")) if ok else "—",
        figures or "—",
    ]
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def render(
    rows: Sequence[Row],
    records: Mapping[str, Any],
    *,
    header: str = "",
    footer: str = "",
) -> str:
    """The whole README: ``header``, the table, notes per row, samples, ``footer``."""
    lines = [header.rstrip(), ""] if header else []
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [render_row(r, records.get(r.key), records) for r in rows]
    notes = [(r, records.get(r.key) or {}) for r in rows]
    details = [
        f"- **{r.key}** ({r.tier}): {_detail(r, rec)}" for r, rec in notes if _detail(r, rec)
    ]
    if details:
        lines += ["", "## Notes per row", "", *details]
    samples = [(r, rec["sample"]) for r, rec in notes if rec.get("sample")]
    if samples:
        lines += ["", "## Samples", ""]
        for r, text in samples:
            lines += [f"**{r.key}** (`{r.config}`):", "", "```", text.strip(), "```", ""]
    if footer:
        lines += ["", footer.rstrip()]
    return "\n".join(lines).rstrip() + "\n"


def _detail(row: Row, record: Mapping[str, Any]) -> str:
    parts = [row.note] if row.note else []
    if record.get("status") == "ok":
        bits = []
        if record.get("cpu_time_s") is not None:
            bits.append(f"CPU time {fmt_duration(record['cpu_time_s'])}")
        if record.get("load") is not None:
            bits.append(f"load average {record['load'][0]:.1f} at the start")
        extras = record.get("extras", {})
        digits = {e.label: e.digits for e in row.extras}
        for label, value in extras.items():
            bits.append(f"{label} {fmt_value(value, digits=digits.get(label, 3))}")
        if record.get("checkpoint_step") is not None:
            bits.append(f"scored checkpoint of step {record['checkpoint_step']}")
        if record.get("date"):
            bits.append(f"run {record['date']} at commit {record.get('commit', '?')}")
        if bits:
            parts.append(", ".join(bits))
    return "; ".join(p.rstrip(".") for p in parts if p) + ("." if parts else "")
