"""TFDS catalog datasets (mnist, tiny_shakespeare, lm1b, wmt*) as random-access sources.

Catalog data is read with ``tfds.data_source`` from array_record files in a data_dir that
may be local or ``gs://`` (``gcsfs`` needed for the latter). When it is not there, the
download is tried only if ``cfg.download`` (default True) and the network answers; otherwise
a ValueError tells the user how to point ``data_dir`` at prepared data, at once instead of
after TFDS's minutes of download retries.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from typing import Any

import tensorflow_datasets as tfds

from rnnlab.data.config import data_dir, tfds_dir

# Builder modules that TFDS's lazy registry cannot import without TensorFlow.
_FAMILIES = {"wmt1": "tensorflow_datasets.translate.", "wmt_t2t": "tensorflow_datasets.translate."}
_PROBE = ("storage.googleapis.com", 443)


def _import_family(name: str) -> None:
    family = name.split("/")[0]
    for prefix, package in _FAMILIES.items():
        if family.startswith(prefix):
            module = family.removesuffix("_translate")
            with contextlib.suppress(ImportError):
                importlib.import_module(package + module)


def _online(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(_PROBE, timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _few_retries(retries: int):
    from tensorflow_datasets.core.download import downloader

    saved = getattr(downloader, "MAX_RETRIES", None)
    if saved is not None:
        downloader.MAX_RETRIES = min(saved, retries)
    try:
        yield
    finally:
        if saved is not None:
            downloader.MAX_RETRIES = saved


def candidate_dirs(cfg: Any) -> list[str]:
    """Where prepared catalog data is looked for: ``tfds_data_dir`` or ``<data_dir>/tfds``,
    then ``data_dir`` itself (a plain TFDS data_dir)."""
    dirs = [tfds_dir(cfg)]
    if not cfg.get("tfds_data_dir"):
        dirs.append(str(data_dir(cfg)))
    return dirs


def offline_message(name: str, cfg: Any, reason: str) -> str:
    dirs = candidate_dirs(cfg)
    return (
        f"TFDS dataset {name!r} is not prepared under data_dir {dirs[-1]!r} (looked in "
        f"{dirs}) and could not be downloaded ({reason}). On a machine with network access run "
        f"`tfds build {name} --file_format=array_record --data_dir=DIR` (or "
        f"`tfds.data_source({name!r}, data_dir=DIR)`), copy DIR here or to gs://, and pass "
        "data_dir=DIR (or tfds_data_dir=DIR) in the dataset config."
    )


def data_source(cfg: Any, name: str, split: str):
    """A TFDS random-access source for ``name`` (e.g. ``"mnist"``) and a split spec
    (e.g. ``"train[:90%]"``); works under ``tfds.testing.mock_data``."""
    _import_family(name)
    for directory in candidate_dirs(cfg):
        try:
            return tfds.data_source(name, split=split, data_dir=directory, download=False)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(f"{name!r} is not a TFDS catalog dataset: {e}") from e
        except Exception as e:  # noqa: BLE001 - TFDS raises several types for "not prepared"
            builder = tfds.builder(name, data_dir=directory)
            if builder.is_prepared():
                raise ValueError(
                    f"TFDS dataset {name!r} in {directory!r} could not be opened as a data "
                    f"source ({type(e).__name__}: {e}); it must be prepared with "
                    "--file_format=array_record (tfrecord files need TensorFlow)"
                ) from e
    if not cfg.get("download"):
        raise ValueError(offline_message(name, cfg, "download=False"))
    if not _online():
        raise ValueError(offline_message(name, cfg, "no network"))
    try:
        with _few_retries(int(cfg.get("download_retries"))):
            return tfds.data_source(name, split=split, data_dir=candidate_dirs(cfg)[0])
    except Exception as e:  # noqa: BLE001
        raise ValueError(offline_message(name, cfg, f"{type(e).__name__}: {e}")) from e


def split_spec(cfg: Any, split: str, has_validation: bool) -> str:
    """The TFDS split string for ``split``. Datasets without a validation split get one
    carved from the end of train (``cfg.validation_fraction``, default 0.1), and their
    train split loses that part."""
    if split == "test" or has_validation:
        return split
    percent = int(round(100 * float(cfg.get("validation_fraction"))))
    if not 0 < percent < 100:
        raise ValueError(f"validation_fraction must be in (0, 1), received {percent / 100}")
    if split == "validation":
        return f"train[{100 - percent}%:]"
    return f"train[:{100 - percent}%]"
