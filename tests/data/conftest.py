"""Fixtures for the data tests: the fetched corpora and prepared datasets under one data dir.

``make test`` sets RNNLAB_DATA_DIR after ``make data``; run directly, the tests use the
repository's ``data/`` and fetch what is missing (the fetch step is idempotent).
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    from rnnlab.data import fetch

    fetch.fetch_austen(root)
    return root
