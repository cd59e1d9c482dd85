"""Fetches the offline corpora and prepares the TFDS datasets: ``python -m rnnlab.data.fetch``.

Idempotent: a stamp file makes a second run return at once. Jane Austen's novels come from
the Debian package ``r-cran-janeaustenr`` (MIT; the texts are public domain): it is
downloaded, not installed (installing would pull in R), unpacked with ``dpkg-deb -x`` and
its R lazy-load database read by ``rnnlab.data.lazyload`` (the ``rdata`` package). The TFDS
builders of the offline datasets are then prepared under ``<data_dir>/tfds`` (array_record
files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = "r-cran-janeaustenr"
RDB = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
NOVELS = (
    "emma",
    "mansfieldpark",
    "northangerabbey",
    "persuasion",
    "prideprejudice",
    "sensesensibility",
)
STAMP = ".rnnlab-fetch.json"
STAMP_VERSION = 3
PREPARED = (
    "austen",
    "japanese_vowels",
    "basic_motions",
    "mnist1d",
    "co2",
    "sunspots",
    "macrodata",
    "spoken_digits",
)
# Options of the copy prepared here: the CI-sized spoken digits that experiments/
# spoken_digits.py:small reads (the full row's copy is synthesised on its first run).
PREPARED_OPTIONS = {
    "spoken_digits": {"train_examples": 240, "validation_examples": 40, "test_examples": 60},
}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _download_deb(workdir: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError(
            f"apt-get and dpkg-deb are needed to fetch {PACKAGE} (a Debian or Ubuntu machine); "
            "elsewhere, put the six novels as UTF-8 files <data_dir>/austen/<novel>.txt"
        )
    result = _run(["apt-get", "download", PACKAGE], workdir)
    if result.returncode != 0:
        # A fresh machine may have no package lists yet.
        update = _run(["apt-get", "update"], workdir)
        if update.returncode != 0:
            raise RuntimeError(f"apt-get update failed:\n{update.stderr.strip()}")
        result = _run(["apt-get", "download", PACKAGE], workdir)
    if result.returncode != 0:
        raise RuntimeError(f"apt-get download {PACKAGE} failed:\n{result.stderr.strip()}")
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {PACKAGE} left no .deb in {workdir}")
    return debs[-1]


def fetch_austen(data_dir: Path) -> Path:
    """Writes ``<data_dir>/austen/<novel>.txt`` (lines joined by newlines) unless present."""
    from rnnlab.data import lazyload

    out = Path(data_dir) / "austen"
    if all((out / f"{n}.txt").exists() for n in NOVELS):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deb = _download_deb(tmp)
        unpacked = tmp / "x"
        result = _run(["dpkg-deb", "-x", str(deb), str(unpacked)], tmp)
        if result.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {deb.name} failed:\n{result.stderr.strip()}")
        objects = lazyload.read_lazyload_db(unpacked / RDB)
        missing = [n for n in NOVELS if n not in objects]
        if missing:
            raise RuntimeError(f"{PACKAGE}: expected novels {list(NOVELS)}, missing {missing}")
        staging = out.with_name("austen.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in NOVELS:
            lines = objects[name].tolist()
            text = "\n".join("" if line is None else line for line in lines) + "\n"
            (staging / f"{name}.txt").write_text(text, encoding="utf-8")
        (staging / "SOURCE").write_text(
            f"Debian package {deb.name} (janeaustenr by Julia Silge, MIT license); "
            "the novels are in the public domain.\n"
        )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    return out


def prepare_all(data_dir: Path, names=PREPARED) -> dict[str, float]:
    """Prepares the offline TFDS datasets; returns seconds spent per dataset."""
    import tensorflow_datasets as tfds

    import rnnlab.data as data

    tfds.disable_progress_bar()

    seconds = {}
    for name in names:
        start = time.perf_counter()
        data.info({"name": name, "data_dir": str(data_dir), **PREPARED_OPTIONS.get(name, {})})
        seconds[name] = round(time.perf_counter() - start, 2)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="root data directory")
    parser.add_argument("--force", action="store_true", help="ignore the stamp file")
    parser.add_argument("--no-prepare", action="store_true", help="only fetch raw corpora")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir).absolute()
    stamp = data_dir / STAMP
    if stamp.exists() and not args.force:
        done = json.loads(stamp.read_text())
        if done.get("version") == STAMP_VERSION and (data_dir / "austen").is_dir():
            print(f"rnnlab data in {data_dir} is up to date")
            return 0
    data_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fetch_austen(data_dir)
    print(f"austen: {data_dir / 'austen'} ({time.perf_counter() - start:.1f} s)")
    seconds = {} if args.no_prepare else prepare_all(data_dir)
    for name, s in seconds.items():
        print(f"prepared {name} in {s} s")
    if not args.no_prepare:
        stamp.write_text(json.dumps({"version": STAMP_VERSION, "prepared": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
