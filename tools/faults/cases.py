"""In-process fault cases: bad input to the library, bad configuration, untrusted files.

Each case is a function that must raise ``ValueError`` (``ConfigError`` is one) whose message
matches a pattern naming what is wrong. ``python -m tools.faults`` counts them in its table
and ``tests/test_faults_cases.py`` runs each as a test. They need no training run: shapes
are tiny and nothing is compiled beyond a cell step.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Path], object]  # gets a scratch directory
    pattern: str  # the message must match (re.search)
    error: type[BaseException] = ValueError


def _rnn(**kw):
    import jax.numpy as jnp
    from flax import nnx

    import rnnlab
    from rnnlab.cells import LSTMCell

    x = kw.pop("x", jnp.ones((3, 7, 4), jnp.float32))
    return rnnlab.RNN(LSTMCell(4, 5, rngs=nnx.Rngs(0)))(x, **kw)


def _ones(shape, dtype=np.float32):
    return np.ones(shape, dtype)


BAD_INPUT: list[Case] = [
    Case("rank 1 inputs", lambda d: _rnn(x=_ones((4,))), r"inputs must be \[\*batch, time"),
    Case("feature size", lambda d: _rnn(x=_ones((3, 7, 6))), r"in_features=4.*got 6"),
    Case("complex inputs", lambda d: _rnn(x=_ones((3, 7, 4), np.complex64)), r"complex.*complex64"),
    Case("empty batch", lambda d: _rnn(x=_ones((0, 7, 4))), r"at least one sequence.*\(0, 7, 4\)"),
    Case("empty time axis", lambda d: _rnn(x=_ones((3, 0, 4))), r"one time step.*\(3, 0, 4\)"),
    Case(
        "seq_lengths past the time axis",
        lambda d: _rnn(seq_lengths=np.array([7, 8, 1])),
        r"seq_lengths must lie in \[0, 7\].*8",
    ),
    Case(
        "negative seq_lengths",
        lambda d: _rnn(seq_lengths=np.array([-1, 2, 1])),
        r"seq_lengths must lie in \[0, 7\].*-1",
    ),
    Case(
        "float seq_lengths",
        lambda d: _rnn(seq_lengths=np.array([1.0, 2.0, 3.0])),
        r"seq_lengths must be integers",
    ),
    Case(
        "resets shape",
        lambda d: _rnn(resets=np.zeros((7, 3), bool)),
        r"resets must have shape \(3, 7\)",
    ),
    Case(
        "data batch_size 0",
        lambda d: _data_load(batch_size=0),
        r"batch_size must be an integer >= 1, received 0",
    ),
    Case("data split", lambda d: _data_load(split="dev"), r"split must be one of .*'dev'"),
    Case("NaN in a series", lambda d: _nan_series(d), r"missing \(NaN\) values.*step 1"),
    Case("vocabulary mismatch", lambda d: _vocab_mismatch(d), r"vocab .*differs"),
    Case("model mismatch", lambda d: _model_mismatch(d), r"another model.*w.*\(16,\).*\(12,\)"),
]


def _data_load(**kw):
    import rnnlab.data

    args = {"split": "train", "batch_size": 2, "seed": 0, **kw}
    return rnnlab.data.load({"name": "adding", "seq_len": 10}, **args)


def _nan_series(scratch: Path):
    import rnnlab.data

    path = scratch / "series.csv"
    rows = ["a,b"] + [f"{i},{'nan' if i == 1 else i + 1}" for i in range(12)]
    path.write_text("\n".join(rows) + "\n")
    cfg = {"name": "csv_series", "path": str(path), "seq_len": 2, "horizon": 1}
    return rnnlab.data.info({**cfg, "tfds_data_dir": str(scratch / "tfds")})


def _tiny_checkpoint(scratch: Path, dataset: dict, shape=(16,)):
    """A checkpoint of ``{"w": ...}`` saved with ``dataset``'s identity."""
    import jax.numpy as jnp

    from rnnlab.train import integrity
    from rnnlab.train.checkpoint import Checkpoints

    ckpt = Checkpoints(scratch / "checkpoints", keep=2, async_save=False)
    state = {"w": jnp.arange(shape[0], dtype=jnp.float32)}
    ckpt.save(1, state, {"dataset": integrity.dataset_identity(dataset)})
    ckpt.wait()
    return ckpt, state


def _abstract(state):
    import jax

    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), state)


def _vocab_mismatch(scratch: Path):
    from rnnlab.train import integrity

    trained = {"name": "austen", "task": "lm", "vocab_size": 4, "vocab": ["<pad>", "a", "b", "c"]}
    other = {**trained, "vocab": ["<pad>", "a", "c", "b"]}  # same size, other order
    ckpt, state = _tiny_checkpoint(scratch, trained)

    def precheck(step, extra):
        integrity.check_dataset(extra.get("dataset"), other, f"checkpoint {step}")

    try:
        return ckpt.restore_latest(_abstract(state), precheck=precheck)
    finally:
        if not (scratch / "checkpoints" / "1").is_dir():  # a mismatch is not damage
            raise AssertionError("the checkpoint was moved aside for a dataset mismatch")


def _model_mismatch(scratch: Path):
    import jax.numpy as jnp

    ckpt, _ = _tiny_checkpoint(scratch, {"task": "lm"})
    return ckpt.restore_latest(_abstract({"w": jnp.zeros((12,), jnp.float32)}))


def _disk_full_while_saving(scratch: Path):
    """Checkpoint 1 saved, then the disk fills (ENOSPC injected into orbax's save) while
    checkpoint 2 is saved: the error must name both, and checkpoint 1 must still restore."""
    import errno
    from unittest import mock

    import orbax.checkpoint as ocp

    ckpt, state = _tiny_checkpoint(scratch, {"task": "lm"})
    full = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch.object(ocp.CheckpointManager, "save", side_effect=full):
        try:
            ckpt.save(2, state, {})
        except OSError as e:
            step, restored, _ = ckpt.restore_latest(_abstract(state))
            if step != 1 or not np.array_equal(np.asarray(restored["w"]), np.asarray(state["w"])):
                raise AssertionError("checkpoint 1 was lost with the failed save") from e
            raise


DISK: list[Case] = [
    Case(
        "disk full while saving (injected)",
        _disk_full_while_saving,
        r"checkpoint 2 could not be written.*No space left on device.*checkpoint 1 is intact",
        OSError,
    ),
]


# -- configuration --------------------------------------------------------------------------


def _validate(overrides: list[str], context: dict | None = None):
    from rnnlab.train import config as cfg_lib
    from tools.faults.process import CONFIG

    config = cfg_lib.override(cfg_lib.load(str(CONFIG)), overrides)
    cfg_lib.validate(cfg_lib.resolved(config), context or {})


def _from_json(data: dict):
    from rnnlab.train import config as cfg_lib

    return cfg_lib.from_dict(data)


BAD_CONFIG: list[Case] = [
    Case("unknown key", lambda d: _validate(["train.stepz=3"]), r"'train\.stepz'.*'train\.steps'"),
    Case("unknown group", lambda d: _validate(["trian.steps=3"]), r"'trian\.steps': no such key"),
    Case("wrong type", lambda d: _validate(["train.steps=ten"]), r"'train\.steps'.*'ten'"),
    Case(
        "wrong type in config.json", lambda d: _from_json({"train": {"steps": "x"}}), "train.steps"
    ),
    Case("negative lr", lambda d: _validate(["optim.lr=-1"]), r"'optim\.lr'.*-1"),
    Case("unknown optimizer", lambda d: _validate(["optim.optimizer=adamm"]), r"optim\.optimizer"),
    Case(
        "batch not divisible by devices",
        lambda d: _validate([], {"data_parallel": 3}),
        r"'train\.batch_size'.*global batch 4 is not divisible by the 3 devices",
    ),
    Case(
        "early stopping without evaluations",
        lambda d: _validate(["train.early_stopping.patience=2"]),
        r"'train\.early_stopping\.patience'.*eval_every > 0",
    ),
    Case(
        "restore without checkpoints",
        lambda d: _validate(
            ["train.nonfinite_action=restore", "train.checkpoint_every=0", "train.eval_every=0"]
        ),
        r"'train\.checkpoint_every'",
    ),
    Case(
        "unknown non-finite action",
        lambda d: _validate(["train.nonfinite_action=retry"]),
        r"'train\.nonfinite_action'.*'retry'",
    ),
    Case("bad NaN step", lambda d: _validate(["debug.nan_at_steps=(0,)"]), r"debug\.nan_at_steps"),
    Case("no dataset", lambda d: _validate(["data.name="]), r"'data\.name'"),
]


# -- untrusted files ------------------------------------------------------------------------

# Calls that would run code from a file: unpickling, or formats that may embed pickles.
UNSAFE_LOADERS = (
    r"\bpickle\.loads?\(",
    r"\bUnpickler\(",
    r"\bdill\.",
    r"\bcloudpickle\.",
    r"\bjoblib\.load\(",
    r"\bmarshal\.loads?\(",
    r"allow_pickle\s*=\s*True",
    r"\byaml\.load\(",
    r"\bshelve\.open\(",
)


def unsafe_loader_calls(package: Path) -> list[str]:
    """``file:line: text`` of every call in ``package``'s sources that could execute code
    from a file; ``torch.load`` must pass ``weights_only=True``. The suite itself (which
    writes malicious pickles to test the loaders) is not scanned."""
    hits = []
    for path in sorted(Path(package).rglob("*.py")):
        if "faults" in path.parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            bad = any(re.search(p, code) for p in UNSAFE_LOADERS)
            if "torch.load(" in code and "weights_only=True" not in code:
                bad = True
            if bad:
                hits.append(f"{path}:{i}: {line.strip()}")
    return hits


def malicious_checkpoint(scratch: Path, *, replace: bool) -> tuple[bool, str]:
    """Saves a checkpoint, plants pickles that would create a marker file in and around it
    (``replace``: also in place of two of its files), restores it with the engine's loader
    and returns ``(safe, outcome)``: safe when no code ran (no marker; every unpickling entry
    point raises while the loader runs, so a pickle that is read at all is caught) and the
    checkpoint either restored intact (extra files ignored) or was refused as corrupt."""
    import pickle

    import jax

    from tools.faults.workdir import plant_pickles

    marker = scratch / "pwned"
    ckpt, state = _tiny_checkpoint(scratch, {"task": "lm"})
    plant_pickles(scratch, marker, replace=replace)
    calls: list[str] = []
    saved = pickle.load, pickle.loads, pickle.Unpickler

    def refuse(*args, **kwargs):
        calls.append("unpickle")
        raise AssertionError("a checkpoint loader tried to unpickle")

    pickle.load, pickle.loads, pickle.Unpickler = refuse, refuse, refuse  # type: ignore
    try:
        found = ckpt.restore_latest(_abstract(state), report=calls.append)
    finally:
        pickle.load, pickle.loads, pickle.Unpickler = saved  # type: ignore
    intact = found is not None and all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(found[1]), jax.tree.leaves(state), strict=True)
    )
    refused = found is None and any("is corrupt" in c for c in calls)
    safe = not marker.exists() and "unpickle" not in calls and (intact if not replace else refused)
    return safe, f"restored intact: {intact}; refused as corrupt: {refused}; reports: {calls}"
