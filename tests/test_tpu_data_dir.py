"""Where rnnlab looks for data: ``$RNNLAB_DATA_DIR`` is the one setting; without it TFDS's
``$TFDS_DATA_DIR`` names where TFDS datasets are, and a run finds data prepared there
instead of preparing them again in ``./data``."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlab.data import config as data_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_data_directory_settings_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_config.tfds_dir({}) == str(tmp_path / "data" / "tfds")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "built"))
    assert data_config.tfds_dir({}) == str(tmp_path / "built")
    assert data_config.data_dir({}) == tmp_path / "data"  # the rest stays in ./data
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "lab"))
    assert data_config.tfds_dir({}) == str(tmp_path / "lab" / "tfds")  # the one setting wins
    assert data_config.tfds_dir({"tfds_data_dir": "gs://b/tfds"}) == "gs://b/tfds"
    assert data_config.tfds_dir({"data_dir": "~/d"}) == str(Path.home() / "d" / "tfds")


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_run_uses_data_prepared_under_tfds_data_dir(tmp_path):
    # A copy of the prepared corpus (the shared one is never written to by this test).
    prepared = Path(data_config.tfds_dir({})) / "rnnlab_text" / "austen-90-5-5"
    built = tmp_path / "built"
    shutil.copytree(prepared, built / "rnnlab_text" / "austen-90-5-5")
    before = _files(built)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RNNLAB_", "JAX_", "XLA_"))}
    env.update(TFDS_DATA_DIR=str(built), JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    code = "import sys; sys.modules['torch'] = None; from rnnlab.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "train", "--config", str(ROOT / "experiments/faults.py"),
         "--workdir", str(tmp_path / "run"), "--config.train.steps=2",
         "--config.train.checkpoint_every=0"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "completed: 2 steps" in result.stdout
    assert not (cwd / "data").exists()  # nothing fetched or prepared in ./data
    assert _files(built) == before  # nor prepared again where the data are
