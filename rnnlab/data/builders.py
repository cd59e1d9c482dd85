"""TFDS builders for the offline datasets (array_record files, read back as data sources).

Each builder is a real ``tfds.core.GeneratorBasedBuilder`` prepared with
``file_format="array_record"`` under ``<data_dir>/tfds`` and read with
``builder.as_data_source()`` (random access, no TensorFlow). Builder configs are made per
call from the dataset options, so for example a different ``split_fractions`` prepares its
own copy next to the default one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rnnlab.data import preparing
from rnnlab.data.fetch import NOVELS as AUSTEN_NOVELS
from rnnlab.data.ts_format import class_names, read_ts
from rnnlab.data.vocab import char_vocab

CHUNK_CHARS = 1 << 16  # one example per 64 Ki characters keeps preparation to seconds


def _info(builder, features: dict, description: str, citation: str = "") -> Any:
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(features),
        citation=citation,
        disable_shuffling=True,  # keeps text chunks and series in order
        metadata=tfds.core.MetadataDict(),
    )


def split_points(length: int, fractions: Sequence[float]) -> list[int]:
    """Cut points of ``[0, length)`` into contiguous train/validation/test parts."""
    a = int(round(length * fractions[0]))
    b = int(round(length * (fractions[0] + fractions[1])))
    return [0, a, b, length]


# ----------------------------------------------------------------------------- text corpora
class TextCorpusConfig(tfds.core.BuilderConfig):
    """A text corpus: named documents, each split into contiguous train/validation/test."""

    def __init__(self, *, documents: Callable[[], list[tuple[str, str]]], fractions, **kwargs):
        super().__init__(**kwargs)
        self.documents = documents
        self.fractions = tuple(fractions)


class TextCorpus(tfds.core.GeneratorBasedBuilder):
    """Plain-text documents stored as ordered 64 Ki-character chunks.

    Every document is cut into contiguous parts by ``fractions`` (the first part trains, the
    next validates, the last tests), so no text is shared between splits. The character
    vocabulary of the training parts is saved in the dataset metadata.
    """

    name = "rnnlab_text"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [TextCorpusConfig(name="placeholder", documents=list, fractions=(1, 0, 0))]

    def _info(self):
        return _info(
            self,
            {
                "document": tfds.features.Text(),
                "chunk": tfds.features.Scalar(np.int32),
                "text": tfds.features.Text(),
            },
            "Text documents as ordered chunks, split contiguously per document.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        documents = self.builder_config.documents()
        if not documents:
            raise ValueError("text corpus: expected at least one document, received none")
        parts: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
        for name, text in documents:
            cuts = split_points(len(text), self.builder_config.fractions)
            for split, lo, hi in zip(parts, cuts[:-1], cuts[1:], strict=True):
                parts[split].append((name, text[lo:hi]))
        self.info.metadata["vocab"] = char_vocab(t for _, t in parts["train"])
        self.info.metadata["documents"] = [name for name, _ in documents]
        return {split: self._generate_examples(p) for split, p in parts.items()}

    def _generate_examples(self, parts):
        for name, text in parts:
            for i, start in enumerate(range(0, max(len(text), 1), CHUNK_CHARS)):
                chunk = text[start : start + CHUNK_CHARS]
                yield f"{name}/{i:06d}", {"document": name, "chunk": i, "text": chunk}


def austen_documents(raw_dir: Path) -> Callable[[], list[tuple[str, str]]]:
    """Reads the novels that ``rnnlab.data.fetch`` wrote to ``raw_dir``."""

    def read() -> list[tuple[str, str]]:
        missing = [n for n in AUSTEN_NOVELS if not (raw_dir / f"{n}.txt").exists()]
        if missing:
            raise ValueError(
                f"Austen corpus missing under {raw_dir} (novels {missing}); run "
                f"`python -m rnnlab.data.fetch --data-dir {raw_dir.parent}` first"
            )
        return [(n, (raw_dir / f"{n}.txt").read_text(encoding="utf-8")) for n in AUSTEN_NOVELS]

    return read


def directory_documents(path: Path, pattern: str) -> tuple[Callable, str]:
    """The text files under ``path`` matching ``pattern``, and a fingerprint of them (the
    reader's ``files`` attribute lists them: the prepared copy keeps their permissions)."""
    if not path.is_dir():
        raise ValueError(f"path must be a directory of text files, received {str(path)!r}")
    files = sorted(p for p in path.glob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"path {str(path)!r} has no files matching pattern {pattern!r}")
    digest = hashlib.sha1(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())

    def read() -> list[tuple[str, str]]:
        docs = []
        for f in files:
            try:
                docs.append((str(f.relative_to(path)), f.read_text(encoding="utf-8")))
            except UnicodeDecodeError as e:
                raise ValueError(f"text file {str(f)!r} must be UTF-8: {e}") from e
        return docs

    read.files = files  # type: ignore[attr-defined]
    return read, digest.hexdigest()[:12]


# ------------------------------------------------------------------- classification archives
def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is needed for this dataset: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


UEA_SETS = {"japanese_vowels": ("JapaneseVowels", 12), "basic_motions": ("BasicMotions", 6)}


class UeaConfig(tfds.core.BuilderConfig):
    def __init__(self, *, archive_name: str, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.archive_name = archive_name
        self.channels = channels


class UeaArchive(tfds.core.GeneratorBasedBuilder):
    """UEA multivariate classification sets from the ``.ts`` files shipped in sktime's wheel.

    Reference: Bagnall et al., "The UEA multivariate time series classification archive",
    2018. JapaneseVowels: Kudo, Toyama and Shimbo, 1999.
    """

    name = "rnnlab_uea"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        UeaConfig(name=k, archive_name=a, channels=c) for k, (a, c) in UEA_SETS.items()
    ]

    def _files(self) -> tuple[Path, Path]:
        name = self.builder_config.archive_name
        folder = _package_dir("sktime") / "datasets" / "data" / name
        return folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"

    def _info(self):
        train, _ = self._files()
        # Only the header: the TFDS info is built on every load, the instances once.
        classes = class_names(train) if train.exists() else ["0"]
        return _info(
            self,
            {
                "sequence": tfds.features.Tensor(
                    shape=(None, self.builder_config.channels), dtype=np.float32
                ),
                "length": tfds.features.Scalar(np.int32),
                "label": tfds.features.ClassLabel(names=classes),
            },
            f"UEA archive set {self.builder_config.archive_name} (variable length allowed).",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        train, test = self._files()
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, path):
        sequences, labels, _ = read_ts(path)
        for i, (seq, label) in enumerate(zip(sequences, labels, strict=True)):
            yield i, {"sequence": seq, "length": len(seq), "label": label}


class Mnist1d(tfds.core.GeneratorBasedBuilder):
    """MNIST-1D (Greydanus, 2020), generated locally by the ``mnist1d`` package.

    The package's default arguments (seed 42) reproduce the published 4,000/1,000 split of
    length-40 signals.
    """

    name = "rnnlab_mnist1d"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return _info(
            self,
            {
                "sequence": tfds.features.Tensor(shape=(40,), dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=10),
            },
            "MNIST-1D: ten digit templates as length-40 signals.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        from mnist1d.data import get_dataset_args, make_dataset

        data = make_dataset(get_dataset_args())
        return {
            "train": self._generate_examples(data["x"], data["y"]),
            "test": self._generate_examples(data["x_test"], data["y_test"]),
        }

    def _generate_examples(self, x, y):
        for i, (seq, label) in enumerate(zip(x, y, strict=True)):
            yield i, {"sequence": seq.astype(np.float32), "label": int(label)}


# -------------------------------------------------------------------------- time series
class SeriesConfig(tfds.core.BuilderConfig):
    def __init__(self, *, reader: Callable[[], tuple[np.ndarray, list[str]]], **kwargs):
        super().__init__(**kwargs)
        self.reader = reader


MACRO_COLUMNS = ("unemp", "infl", "tbilrate", "realgdp_growth")


def macrodata_frame():
    """statsmodels' ``macrodata`` (quarterly US, 1959Q1-2009Q3) as the four columns of the
    ``macrodata`` series: the unemployment rate (%) first, then the covariates inflation (%,
    annualised), the 3-month Treasury bill rate (%) and real GDP growth ``100 diff(log)`` (%
    per quarter). The first quarter is dropped: it has no growth (and ``infl`` is 0 there
    for want of a previous CPI), leaving 202 quarters from 1959Q2."""
    from statsmodels import datasets

    frame = datasets.macrodata.load_pandas().data
    out = frame[["year", "quarter", "unemp", "infl", "tbilrate"]].copy()
    gdp = frame["realgdp"].to_numpy(np.float64)
    out["realgdp_growth"] = 100 * np.diff(np.log(gdp), prepend=np.nan)
    return out.iloc[1:].reset_index(drop=True)


def statsmodels_series(which: str) -> Callable[[], tuple[np.ndarray, list[str]]]:
    """co2 (weekly Mauna Loa CO2, ppm, 1958-2001), sunspots (yearly, 1700-2008) or
    macrodata (quarterly US unemployment with covariates, 1959-2009; :func:`macrodata_frame`)."""

    def read():
        from statsmodels import datasets

        if which == "macrodata":
            frame = macrodata_frame()
            return frame[list(MACRO_COLUMNS)].to_numpy(np.float64), list(MACRO_COLUMNS)
        if which == "co2":
            frame = datasets.co2.load_pandas().data
            return frame[["co2"]].to_numpy(np.float64), ["co2"]
        frame = datasets.sunspots.load_pandas().data
        return frame[["SUNACTIVITY"]].to_numpy(np.float64), ["SUNACTIVITY"]

    return read


class Series(tfds.core.GeneratorBasedBuilder):
    """One multivariate time series per config, stored whole (gaps kept as NaN)."""

    name = "rnnlab_series"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        SeriesConfig(name="co2", reader=statsmodels_series("co2")),
        SeriesConfig(name="sunspots", reader=statsmodels_series("sunspots")),
        SeriesConfig(name="macrodata", reader=statsmodels_series("macrodata")),
    ]

    def _info(self):
        return _info(
            self,
            {"values": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="zlib")},
            "A time series [time, features]; NaN marks a missing value.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        values, columns = self.builder_config.reader()
        self.info.metadata["columns"] = list(columns)
        return {"full": self._generate_examples(values)}

    def _generate_examples(self, values):
        yield 0, {"values": np.asarray(values, np.float32)}


def prepare(
    builder: tfds.core.DatasetBuilder, sources: Sequence[Path] = ()
) -> tfds.core.DatasetBuilder:
    """Prepares a builder once (array_record); later calls only open it. ``sources``: the
    user's files it reads; the prepared files keep no permission they lack
    (:mod:`rnnlab.data.preparing`, which also says when preparing is refused)."""
    if not builder.is_prepared():
        preparing.check_may_prepare(f"dataset {builder.name} in {builder.data_dir}")
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception:
            # Another process may have finished the same preparation first.
            if not builder.is_prepared():
                raise
        preparing.restrict_to_sources(builder.data_dir, sources)
    return builder


def source(builder: tfds.core.DatasetBuilder, split: str):
    """The random-access data source of a prepared builder's split."""
    return prepare(builder).as_data_source(split=split)


# Folders where datasets not yet prepared are prepared instead (prepare_elsewhere).
_SCRATCH: list[str] = []


@contextlib.contextmanager
def prepare_elsewhere() -> Iterator[None]:
    """Inside the block, a dataset not prepared in its data dir is prepared in a temporary
    folder, deleted at the end: a look at the data (``rnnlab train --dry-run``) leaves the
    data dir as it found it. Prepared datasets are read where they are."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-data-") as scratch:
        _SCRATCH.append(scratch)
        try:
            yield
        finally:
            _SCRATCH.pop()


def make(
    cls, data_dir: str, config: Any = None, *, sources: Sequence[Path] = ()
) -> tfds.core.DatasetBuilder:
    """A prepared builder of ``cls`` (array_record files) in ``data_dir`` (or, inside
    :func:`prepare_elsewhere`, in its scratch folder when not prepared yet); ``sources`` as
    for :func:`prepare`."""
    kwargs = {"data_dir": data_dir, "file_format": "array_record"}
    if config is not None:
        kwargs["config"] = config
    builder = cls(**kwargs)
    if _SCRATCH and not builder.is_prepared():
        builder = cls(**{**kwargs, "data_dir": _SCRATCH[-1]})
    return prepare(builder, sources)
