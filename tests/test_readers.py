"""Readers beside a writer, and what they are told: a checkpoint rotated away while it is
read is read again at the next step that exists (never called corrupt), an export replaces
the previous one whole or not at all, a summary older than the newest checkpoint is
rebuilt, and the checkpoint named best is the one kept when two evaluations tie.

The runs are the fault suite's tiny experiment (experiments/faults.py). References: the
bytes of an earlier export, parameters loaded from an untouched copy of the workdir, a
summary written by the run that completed, and hand-computed retention."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rnnlab import cli
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import export
from rnnlab.train.early_stopping import EarlyStopping

REPO = Path(__file__).resolve().parents[1]
FAULTS = str(REPO / "experiments" / "faults.py")


@pytest.fixture(autouse=True)
def data_env(monkeypatch):
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(root))


def train(workdir, *args):
    # The tests simulate 8 devices: the global batch must split over them.
    spec = ["--config", FAULTS, "--config.train.batch_size=8"]
    return cli.main(["train", "--workdir", str(workdir), *spec, *args])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 10-step run with checkpoints 5 and 10."""
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    os.environ.setdefault("RNNLAB_DATA_DIR", str(root))
    workdir = tmp_path_factory.mktemp("finished") / "run"
    assert train(workdir, "--config.train.steps=10") == 0
    return workdir


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def params_of(model) -> dict[str, np.ndarray]:
    import jax
    from flax import nnx

    from rnnlab.parallel import path_to_str

    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    return {path_to_str(p): np.asarray(x) for p, x in leaves[0]}


def rotate_away_while_reading(monkeypatch, workdir: Path, step: int) -> None:
    """Deletes checkpoint ``step`` the first time a reader starts reading it, as the
    trainer's rotation does to a reader beside it."""
    real = ckpt_lib.Checkpoints._read
    done = []

    def read(self, s, **items):
        if s == step and not done:
            done.append(s)
            shutil.rmtree(workdir / "checkpoints" / str(step))
        return real(self, s, **items)

    monkeypatch.setattr(ckpt_lib.Checkpoints, "_read", read)


# -- a checkpoint rotated away during a read ---------------------------------------------------


def test_a_latest_checkpoint_rotated_away_while_read_is_read_again_not_called_corrupt(
    finished, tmp_path, monkeypatch, capsys
):
    want = params_of(export.load(str(finished), 5)[0])
    workdir = copy_of(finished, tmp_path / "run")
    rotate_away_while_reading(monkeypatch, workdir, 10)
    model, info = export.load(str(workdir), "latest")
    err = capsys.readouterr().err
    assert "checkpoint 10" in err and "deleted while it was read" in err
    assert "corrupt" not in err
    assert info.step == 5
    got = params_of(model)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert not (workdir / "corrupt_checkpoints").exists()


def test_a_step_asked_by_number_that_vanishes_is_named_as_deleted_not_corrupt(
    finished, tmp_path, monkeypatch
):
    workdir = copy_of(finished, tmp_path / "run")
    rotate_away_while_reading(monkeypatch, workdir, 10)
    with pytest.raises(ckpt_lib.CheckpointVanishedError) as info:
        export.load(str(workdir), 10)
    text = str(info.value)
    assert "deleted while it was read" in text and "corrupt" not in text
    assert "--checkpoint latest" in text


def test_eval_beside_a_rotation_reports_the_step_it_read(finished, tmp_path, monkeypatch, capsys):
    workdir = copy_of(finished, tmp_path / "run")
    rotate_away_while_reading(monkeypatch, workdir, 10)
    capsys.readouterr()
    code = cli.main(["eval", "--workdir", str(workdir), "--checkpoint", "latest"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["step"] == 5
    assert "corrupt" not in captured.err and "pybind11" not in captured.err


# -- atomic export -----------------------------------------------------------------------------


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")}


@pytest.mark.parametrize("dies_in", ["params", "after_params"])
def test_an_export_that_dies_leaves_the_previous_export_whole(
    finished, tmp_path, monkeypatch, dies_in
):
    out = tmp_path / "exported"
    export.export(str(finished), str(out), checkpoint=5)
    before = tree_bytes(out)

    def die(*args, **kwargs):
        raise OSError("killed")

    if dies_in == "params":  # while params.npz is written
        monkeypatch.setattr(np, "savez", die)
    else:  # right after params.npz, before the manifest
        monkeypatch.setattr(export, "jsonable", die)
    with pytest.raises(OSError, match="killed"):
        export.export(str(finished), str(out), checkpoint=10)
    assert tree_bytes(out) == before
    assert sorted(os.listdir(tmp_path)) == ["exported"]  # no temporary left
    monkeypatch.undo()
    assert export.load(str(out))[1].step == 5


def test_a_new_export_replaces_the_old_one_with_its_own_step_and_weights(finished, tmp_path):
    out = tmp_path / "exported"
    export.export(str(finished), str(out), checkpoint=5)
    export.export(str(finished), str(out), checkpoint=10)
    model, info = export.load(str(out))
    assert info.step == 10
    want = params_of(export.load(str(finished), 10)[0])
    got = params_of(model)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_an_export_into_a_folder_that_is_not_an_export_is_refused(finished, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an rnnlab export"):
        export.export(str(finished), str(out))
    assert (out / "notes.txt").read_text() == "keep me"


# -- stale summary -----------------------------------------------------------------------------


def test_a_summary_older_than_the_newest_checkpoint_is_rebuilt(finished, tmp_path, capsys):
    """An extended run killed after its last checkpoint, before its summary.json, left
    the previous run's summary: every rerun reported step 10 and its bpc with exit 0."""
    workdir = copy_of(finished, tmp_path / "run")
    old = (workdir / "summary.json").read_bytes()
    assert cli.main(["train", "--workdir", str(workdir), "--extend", "5"]) == 0
    want = json.loads((workdir / "summary.json").read_text())
    assert want["steps"] == 15
    (workdir / "summary.json").write_bytes(old)  # what the late kill leaves
    capsys.readouterr()
    assert cli.main(["train", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "completed: 15 steps" in out and "at step 15" in out
    got = json.loads((workdir / "summary.json").read_text())
    assert got["steps"] == 15 and got["rebuilt_from_checkpoint"] == 15
    assert got["final"]["validation"] == pytest.approx(want["final"]["validation"])


# -- ties for the best checkpoint --------------------------------------------------------------


def test_a_tie_keeps_and_loads_the_checkpoint_the_summary_names_best(tmp_path):
    """Losses 2, 1, 1, 3 at steps 1-4, keep 1: early stopping (the summary) names step 2;
    orbax's BestN kept step 3 and deleted step 2."""
    import jax.numpy as jnp

    losses = {1: 2.0, 2: 1.0, 3: 1.0, 4: 3.0}
    early = EarlyStopping("loss", "min")
    checkpoints = ckpt_lib.Checkpoints(
        tmp_path / "checkpoints", keep=1, best_metric="loss", best_mode="min", async_save=False
    )
    for step, loss in losses.items():
        state = {"w": jnp.full((3,), float(step), jnp.float32)}
        checkpoints.save(step, state, {}, metrics={"loss": loss})
        early.update(step, {"loss": loss})
    checkpoints.wait()
    assert early.summary()["step"] == 2
    assert sorted(checkpoints.all_steps()) == [2, 4]
    assert checkpoints.best_step() == 2
    assert ckpt_lib.choose_step(checkpoints, "best") == 2
    checkpoints.close()


def test_orbax_names_the_earliest_of_tied_maxima_also_after_reopening(tmp_path):
    """Accuracies 0.5, 0.9, NaN, 0.9, 0.7 at steps 1-5, keep 1: early stopping names step 2
    (NaN is never an improvement); the writer and a reader opened afterwards (orbax reads
    the metrics back from disk) name and keep step 2, and the metrics read back are the
    ones saved."""
    import jax.numpy as jnp

    values = {1: 0.5, 2: 0.9, 3: float("nan"), 4: 0.9, 5: 0.7}
    early = EarlyStopping("accuracy", "max")
    path = tmp_path / "checkpoints"
    checkpoints = ckpt_lib.Checkpoints(
        path, keep=1, best_metric="accuracy", best_mode="max", async_save=False
    )
    for step, value in values.items():
        checkpoints.save(step, {"w": jnp.zeros(2)}, {}, metrics={"accuracy": value})
        early.update(step, {"accuracy": value})
    checkpoints.wait()
    assert early.summary()["step"] == 2
    assert sorted(checkpoints.all_steps()) == [2, 5]
    assert checkpoints.best_step() == 2
    checkpoints.close()
    reader = ckpt_lib.Checkpoints(
        path, best_metric="accuracy", best_mode="max", read_only=True, async_save=False
    )
    assert reader.best_step() == 2 and reader.metrics(2) == {"accuracy": 0.9}
    reader.close()


def test_the_tie_rule_for_max_metrics_is_also_the_earliest():
    assert ckpt_lib.best_of([(0.5, 1), (0.9, 2), (0.9, 3)], "max") == 2
    assert ckpt_lib.best_of([(0.5, 1), (0.9, 2), (0.9, 3)], "min") == 1
    assert ckpt_lib.best_of([], "min") is None


def test_eval_in_a_workdir_it_cannot_write_prints_its_results_anyway(
    finished, tmp_path, monkeypatch, capsys
):
    """A read-only (or someone else's) workdir: the results used to be computed and lost."""
    import errno

    from rnnlab.train import files

    workdir = copy_of(finished, tmp_path / "run")
    real = files.write_json

    def read_only(path, obj):
        if str(path).startswith(str(workdir)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, obj)

    monkeypatch.setattr(files, "write_json", read_only)
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--config.eval.max_batches=1"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert results["step"] == 10 and "loss" in results
    assert "results not saved" in captured.err and "Read-only file system" in captured.err
    assert not (workdir / "eval_validation.json").exists()


# -- a workdir from someone else ---------------------------------------------------------------


def private_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "private"
    folder.mkdir()
    secret = folder / "diary.txt"
    secret.write_text("my private diary " * 200)
    secret.chmod(0o600)
    return folder


def test_eval_of_a_workdir_does_not_prepare_the_data_its_config_names(finished, tmp_path, capsys):
    """config.json pointed text_dir at a private folder and data_dir elsewhere: eval used
    to copy the private text there (mode 0644) before refusing the checkpoint."""
    workdir = copy_of(finished, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    config = json.loads((workdir / "config.json").read_text())
    config["data"] = {
        "name": "text_dir",
        "path": str(private_folder(tmp_path)),
        "pattern": "**/*",
        "data_dir": str(elsewhere),
        "seq_len": 16,
    }
    (workdir / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    for command in ("eval", "sample"):
        assert cli.main([command, "--workdir", str(workdir)]) == 2  # refused: bad input
        err = capsys.readouterr().err
        assert "is not prepared" in err and "config.json" in err, err
    assert not elsewhere.exists() or list(elsewhere.rglob("*.array_record*")) == []


def test_a_prepared_copy_is_no_more_readable_than_its_source(tmp_path):
    from rnnlab import data

    prepared = tmp_path / "prepared"
    cfg = {"name": "text_dir", "path": str(private_folder(tmp_path)), "pattern": "**/*"}
    data.info({**cfg, "data_dir": str(prepared), "seq_len": 16})
    # The prepared version folder (tfds also keeps a builder-wide .config/metadata.json,
    # which holds no text of the source).
    written = [p for p in prepared.rglob("1.0.0/*") if p.is_file()]
    assert any(".array_record" in p.name for p in written)
    for p in written:
        assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))
