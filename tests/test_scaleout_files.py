"""Workdirs on ``gs://``: the trainer's files go through ``etils.epath`` (or orbax).

Cloud Storage cannot be reached from the tests, so a stand-in filesystem is registered for
the ``gs://`` scheme with fsspec (the backend ``etils.epath`` uses for ``gs://`` when
TensorFlow is absent, as on a TPU VM with the ``gcs`` extra). It keeps files in memory and,
like Cloud Storage, refuses to append to an object. Every writer of a run's files (config,
metric log, plots, summaries) is run against it. A static check keeps plain ``open()``
and ``os`` file calls out of the training engine.
"""

import argparse
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
from etils.epath import backend as epath_backend
from fsspec.implementations.memory import MemoryFileSystem

from rnnlab.cli import workdir as commands
from rnnlab.train import config as cfg_lib
from rnnlab.train import files, plots
from rnnlab.train import metric_log as metrics_lib

ROOT = Path(__file__).resolve().parents[1]
# fsspec's table of filesystems by scheme (the package attribute `registry` is a read-only view)
REGISTRY = importlib.import_module("fsspec.registry")._registry
WORKDIR = "gs://bucket/runs/charlm"


class FakeGCS(MemoryFileSystem):
    """In-memory ``gs://`` filesystem that, like Cloud Storage, cannot append."""

    protocol = ("gs", "gcs")
    store: dict = {}
    pseudo_dirs = [""]

    def __init__(self, *args, finalize_on_close=False, **kwargs):
        del finalize_on_close  # an option of gcsfs that etils passes
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for prefix in ("gs://", "gcs://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return super()._strip_protocol(path)

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise NotImplementedError("Cloud Storage objects cannot be appended to")
        return super()._open(path, mode=mode, **kwargs)


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    FakeGCS.store.clear()
    FakeGCS.pseudo_dirs[:] = [""]
    for name in ("gs", "gcs"):
        monkeypatch.setitem(REGISTRY, name, FakeGCS)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    monkeypatch.chdir(tmp_path)  # a gs:// path mistaken for a local one would land here
    yield FakeGCS
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    assert not list(tmp_path.iterdir()), "a gs:// path was written to the local disk"


def _objects(fs):
    return {k.lstrip("/"): v.getvalue() for k, v in fs.store.items()}


def test_metric_log_config_and_plots_write_to_gs(gcs):
    config = cfg_lib.base_config()
    config.data.name = "austen"
    cfg_lib.override(config, ["mesh.fsdp=2", "optim.lr=0.01"])
    files.makedirs(WORKDIR)
    files.write_json(files.join(WORKDIR, "config.json"), cfg_lib.to_dict(config))

    writer = metrics_lib.MetricWriter(WORKDIR, tensorboard=False)
    for step, loss in ((1, 2.0), (2, 1.5), (3, float("nan"))):
        writer.write(step, "train", {"loss": loss, "grad_norm": 1.0 / step, "lr": 0.01})
    writer.write(2, "validation", {"loss": 1.7})
    writer.close()  # on gs:// the log is rewritten in batches: at flush, close, checkpoints
    # A resumed run from step 2 drops what came later, then logs again.
    resumed = metrics_lib.MetricWriter(WORKDIR, tensorboard=False)
    resumed.truncate_after(2)
    resumed.write(3, "train", {"loss": 1.2, "grad_norm": 0.3, "lr": 0.01})
    resumed.close()
    records = metrics_lib.read(files.join(WORKDIR, "metrics.jsonl"))
    assert [(r["step"], r["split"]) for r in records] == [
        (1, "train"),
        (2, "train"),
        (2, "validation"),
        (3, "train"),
    ]
    assert records[-1]["loss"] == 1.2

    written = plots.plot_workdir(WORKDIR)
    assert files.join(WORKDIR, "plots", "loss.png") in written
    objects = _objects(gcs)
    for path in written:
        assert path.startswith("gs://")
        assert objects[path[len("gs://") :]].startswith(b"\x89PNG")
    assert not [k for k in objects if k.endswith(".tmp")]  # temporary names renamed away

    # `rnnlab eval/sample --workdir gs://...` read the run's config from there.
    args = argparse.Namespace(workdir=WORKDIR, config=None, overrides=["train.steps=7"])
    loaded = commands.load_config(args)
    assert loaded.mesh.fsdp == 2 and loaded.optim.lr == 0.01 and loaded.train.steps == 7
    assert files.absolute(WORKDIR) == WORKDIR and files.is_dir(WORKDIR)


def test_writes_replace_files_whole(gcs):
    path = files.join(WORKDIR, "summary.json")
    files.write_json(path, {"steps": 1})
    files.write_json(path, {"steps": 2, "loss": np.float32(0.5).item()})
    assert files.read_json(path) == {"steps": 2, "loss": 0.5}
    with pytest.raises(NotImplementedError, match="appended"):
        with files.path(path).open("a") as f:
            f.write("x")


PLAIN_IO = re.compile(
    r"(?<![\w.])open\(|os\.(makedirs|replace|rename|remove|listdir|mkdir)\(|"
    r"os\.path\.(exists|isdir|isfile|getsize)\(|shutil\.|\.savefig\((?!png)"
)


# Modules whose files are never in a workdir, each with where its files are: they are on
# the local machine by design (an atomic directory swap needs a local rename).
LOCAL_ONLY = {
    "memory.py": "/proc/meminfo and the process limits",
    "predict.py": "the user's local input and output files",
    "predict_decoders.py": "the user's local prompt files",
    "publish.py": "a local export directory, swapped in whole by rename",
    "stablehlo.py": "a local export directory",
}


def test_training_engine_has_no_plain_file_io():
    """File access in rnnlab/train and the command line goes through rnnlab.train.files."""
    offenders = []
    cli = [ROOT / "rnnlab" / "cli" / n for n in ("__init__.py", "commands.py", "workdir.py")]
    for path in [*sorted((ROOT / "rnnlab" / "train").glob("*.py")), *cli]:
        if path.name == "files.py" or path.name in LOCAL_ONLY:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if PLAIN_IO.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use rnnlab.train.files (gs:// workdirs):\n" + "\n".join(offenders)


def test_tfds_data_dir_is_handed_to_tfds_as_given(tmp_path):
    """``data.tfds_data_dir`` reaches TFDS as a string (a gs:// one stays gs://), and a run's
    data are prepared there and read back from it."""
    import rnnlab.data
    from rnnlab.data.config import tfds_dir

    assert tfds_dir({"name": "sunspots", "tfds_data_dir": "gs://bucket/tfds"}) == "gs://bucket/tfds"
    cfg = {"name": "sunspots", "tfds_data_dir": str(tmp_path / "tfds"), "seq_len": 16}
    it = rnnlab.data.load(cfg, split="train", batch_size=4, seed=0, shard_index=1, shard_count=2)
    batch = next(it)
    assert batch["inputs"].shape == (4, 16, 1)
    shards = list((tmp_path / "tfds").rglob("*.array_record-*"))
    assert shards, "the data were not prepared under tfds_data_dir"
