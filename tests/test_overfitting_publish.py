"""A rerun of the overfitting study prints its table; only --publish rewrites the docs."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_docs_table_is_written_only_with_publish(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delitem(sys.modules, "experiments.overfitting", raising=False)
    from experiments import overfitting

    calls = []
    monkeypatch.setattr(
        overfitting, "report", lambda out, variants, doc, figure: calls.append((doc, figure)) or ""
    )
    base = ["--table-only", "--out", str(tmp_path)]
    assert overfitting.main(base) == 0
    assert overfitting.main(base + ["--publish"]) == 0
    assert calls == [(None, None), (overfitting.DOC, overfitting.FIGURE)]
