"""The fetch step is idempotent: a stamp or existing files make it return without work."""

import json
import shutil

from rnnlab.data import fetch


def test_second_run_is_a_no_op(tmp_path, data_root, capsys, monkeypatch):
    target = tmp_path / "data"
    shutil.copytree(data_root / "austen", target / "austen")

    def no_download(*args, **kwargs):
        raise AssertionError("the corpus is present: nothing should be downloaded")

    monkeypatch.setattr(fetch, "_download_deb", no_download)
    assert fetch.main(["--data-dir", str(target), "--no-prepare"]) == 0
    assert not (target / fetch.STAMP).exists()  # nothing prepared yet, so no stamp
    (target / fetch.STAMP).write_text(json.dumps({"version": fetch.STAMP_VERSION}))
    capsys.readouterr()
    assert fetch.main(["--data-dir", str(target)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_prepare_all_builds_array_record_datasets(tmp_path, data_root):
    target = tmp_path / "data"
    shutil.copytree(data_root / "austen", target / "austen")
    seconds = fetch.prepare_all(target, names=("austen", "sunspots"))
    assert set(seconds) == {"austen", "sunspots"}
    assert list((target / "tfds" / "rnnlab_series" / "sunspots").glob("*/*.array_record*"))
