"""What a workdir records about its run besides checkpoints and metrics: the config, the
history of accepted config changes, and what is archived when a run is restarted.

- ``config.json``: the resolved config of the run as it trains now. It is written only after
  the run has accepted the workdir (lock taken, checkpoint restored or a fresh start
  allowed), so a refused command leaves it byte for byte as it was.
- ``config_history.jsonl``: one record per accepted start, resume with changed keys,
  extension or restart: ``{"step", "time", "event", "changes": {key: [old, new]}}``.
- ``previous/<time>/``: on ``--restart`` the old metric log, TensorBoard events, summary,
  plots and history are moved here (never deleted); damaged checkpoints stay in
  ``corrupt_checkpoints/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from rnnlab.train import config as cfg_lib
from rnnlab.train import files

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
HISTORY_FILE = "config_history.jsonl"
PREVIOUS_DIR = "previous"
CORRUPT_DIR = "corrupt_checkpoints"
# Moved aside by a restart: everything that describes the abandoned trajectory.
_ARCHIVED = ("metrics.jsonl", "tensorboard", SUMMARY_FILE, "plots", "samples.txt", HISTORY_FILE)


class RestartRefusedError(RuntimeError):
    """The workdir had checkpoints, none is left, and the user did not ask to restart."""


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{dotted key: [old, new]}`` for every leaf that differs (``None`` for absent)."""
    if old is None:
        return {}
    a, b = _flat(old), _flat(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def saved_config(workdir: str) -> dict[str, Any] | None:
    """The workdir's ``config.json`` as a dict, ``None`` when absent; a file that is not
    a JSON object raises :class:`~rnnlab.train.config.ConfigError` naming it."""
    path = files.join(workdir, CONFIG_FILE)
    if not files.exists(path):
        return None
    try:
        data = json.loads(files.read_text(path))
    except json.JSONDecodeError as e:
        raise cfg_lib.ConfigError(
            "config",
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            "repair it, or pass --config experiments/<file>.py to replace it",
        ) from e
    if not isinstance(data, dict):
        raise cfg_lib.ConfigError("config", f"{path} holds {type(data).__name__}, not an object")
    return data


# Changed keys whose effect on a resumed run is not what one might expect.
def surprising(diff: Mapping[str, list[Any]], config: cfg_lib.ConfigDict) -> list[str]:
    """Warnings for the changes in ``diff`` (a resumed run) that deserve one."""
    out = []
    if "train.steps" in diff and "optim.total_steps" not in diff:
        if config.optim.schedule not in ("constant", "plateau"):
            out.append(
                f"train.steps changed {diff['train.steps'][0]} -> {diff['train.steps'][1]} but "
                f"the {config.optim.schedule} schedule still ends at optim.total_steps = "
                f"{config.optim.total_steps}, so later steps train at its final rate; use "
                "--extend N to re-derive it (or set optim.total_steps)"
            )
    for key in sorted(diff):
        group = key.split(".")[0]
        if key == "seed":
            out.append("seed changed: the restored state keeps the old random key and data order")
        elif group == "data":
            out.append(f"{key} changed: the data position restored is that of the old data")
        elif key == "train.batch_size":
            out.append("train.batch_size changed: the carried state and data position are reset")
        elif group == "model":
            out.append(f"{key} changed on a resumed model (its arrays are restored as saved)")
    return out


def append_history(workdir: str, step: int, event: str, diff: Mapping[str, Any]) -> None:
    """Adds one record to ``config_history.jsonl`` (rewritten whole: it stays short, and
    Cloud Storage objects cannot be appended to)."""
    path = files.join(workdir, HISTORY_FILE)
    text = files.read_text(path) if files.exists(path) else ""
    record = {"step": int(step), "time": round(time.time(), 3), "event": event, "changes": diff}
    files.write_text(path, text + json.dumps(record, sort_keys=True) + "\n")


def read_history(workdir: str) -> list[dict[str, Any]]:
    path = files.join(workdir, HISTORY_FILE)
    if not files.exists(path):
        return []
    return [json.loads(line) for line in files.read_text(path).splitlines() if line.strip()]


def accept(workdir: str, config: cfg_lib.ConfigDict, step: int, event: str) -> dict[str, list]:
    """Writes ``config.json`` and, when something changed (or at the first start), a history
    record; returns the changes. Call only once the run owns the workdir."""
    new = cfg_lib.to_dict(config)
    old = saved_config(workdir)
    diff = changes(old, new)
    if old is None and event == "resume":
        event = "start"
    if old is None or diff or event != "resume":
        append_history(workdir, step, event, diff)
    if old is None or diff:
        files.write_json(files.join(workdir, CONFIG_FILE), new)
    return diff


def current_summary(workdir: str, step: int) -> dict[str, Any] | None:
    """The workdir's ``summary.json`` if it describes the run at checkpoint ``step``, else
    ``None`` (missing, unreadable, or written before a later checkpoint: an extended run
    killed after its last checkpoint leaves the previous run's summary behind, and
    reporting it would name the wrong step and metrics)."""
    path = files.join(workdir, SUMMARY_FILE)
    if not files.exists(path):
        return None
    try:
        summary = files.read_json(path)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(summary, dict) or summary.get("steps") != step:
        return None
    return summary


def had_checkpoints(workdir: str) -> bool:
    """Whether this workdir ever held a checkpoint that is now gone: damaged ones were moved
    to ``corrupt_checkpoints/``, or a summary says the run got somewhere."""
    corrupt = files.join(workdir, CORRUPT_DIR)
    if files.is_dir(corrupt) and any(True for _ in files.path(corrupt).iterdir()):
        return True
    return files.exists(files.join(workdir, SUMMARY_FILE))


def archive_for_restart(workdir: str, *, checkpoints: bool = True) -> str:
    """Moves the old trajectory's records (and, with ``checkpoints``, its checkpoints) to
    ``previous/<time>/``; returns that folder. ``corrupt_checkpoints/`` stays where it is."""
    dest = files.join(workdir, PREVIOUS_DIR, time.strftime("%Y%m%d-%H%M%S"))
    names = _ARCHIVED + (("checkpoints",) if checkpoints else ())
    for name in names:
        src = files.path(files.join(workdir, name))
        if src.exists():
            files.makedirs(dest)
            src.rename(files.path(files.join(dest, name)))
    return dest


def extended(
    saved: Mapping[str, Any] | cfg_lib.ConfigDict,
    config: cfg_lib.ConfigDict,
    n: int,
    *,
    schedule: str = "stretch",
) -> tuple[cfg_lib.ConfigDict, str]:
    """``config`` with ``train.steps`` raised by ``n`` over the saved run's, and the
    schedule's ``optim.total_steps`` re-derived (``"stretch"``: it ends at the new last
    step) or kept (``"keep"``: the new steps train at the schedule's final rate). Returns
    the config and a one-line description."""
    if n <= 0:
        raise cfg_lib.ConfigError("train.steps", f"--extend needs a positive number, got {n}")
    if schedule not in ("stretch", "keep"):
        raise cfg_lib.ConfigError("optim.total_steps", f"unknown --extend-schedule {schedule!r}")
    saved = cfg_lib.to_dict(saved) if isinstance(saved, cfg_lib.ConfigDict) else saved
    old_steps = int(saved["train"]["steps"])
    old_total = int(saved["optim"].get("total_steps") or old_steps)
    data = cfg_lib.to_dict(config)
    data["train"]["steps"] = old_steps + n
    data["optim"]["total_steps"] = old_steps + n if schedule == "stretch" else old_total
    out = cfg_lib.from_dict(data)
    what = "re-derived" if schedule == "stretch" else "kept"
    return out, (
        f"extending the run from {old_steps} to {old_steps + n} steps; optim.total_steps "
        f"{what}: {old_total} -> {out.optim.total_steps}"
    )
