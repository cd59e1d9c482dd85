"""Own data end to end: files made here, trained through ``rnnlab train``, scored by
``rnnlab eval`` and checked against NumPy on ``rnnlab predict``'s output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rnnlab import cli

SMALL = "experiments/own_data.py:{task},small"


def _sequences(n: int, seed: int, features: int = 3):
    """Variable-length sequences (4 to 12 steps) whose class is the sign of feature 0's mean."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, size=n)
    seqs = [rng.normal(size=(t, features)).astype(np.float32) for t in lengths]
    labels = np.array([int(s[:, 0].mean() > 0) for s in seqs])
    return seqs, lengths, labels


def _ragged_npz(path, seqs, lengths, labels) -> None:
    np.savez(path, inputs=np.concatenate(seqs), lengths=lengths, labels=labels)


def _long_table(seqs, targets) -> pd.DataFrame:
    rows = []
    for i, (s, y) in enumerate(zip(seqs, targets, strict=True)):
        for t, x in enumerate(s):
            rows.append({"id": f"s{i:03d}", "time": t, "a": x[0], "b": x[1], "label": y})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def _train_eval_predict(
    task: str, tmp_path, train: str, test: str, out: str, capsys, pad_to: str = "batch"
) -> dict:
    """Trains on ``train`` with ``test`` as the test split, predicts ``test`` into ``out``
    and returns ``rnnlab eval``'s test metrics. ``pad_to="max"``: evaluation decodes to the
    longest target, as ``rnnlab predict`` does."""
    workdir = tmp_path / "run"
    args = ["train", "--config", SMALL.format(task=task), "--workdir", str(workdir),
            f"--config.data.path={tmp_path / train}",
            f"--config.data.test_path={tmp_path / test}",
            f"--config.data.pad_to={pad_to}"]  # fmt: skip
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    args = ["predict", "--workdir", str(workdir), "--input", str(tmp_path / test),
            "--output", str(tmp_path / out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    return metrics


def test_classification_from_ragged_npz_matches_numpy_on_predictions(tmp_path, capsys):
    seqs, lengths, labels = _sequences(96, 0)
    _ragged_npz(tmp_path / "train.npz", seqs, lengths, labels)
    tseqs, tlengths, tlabels = _sequences(40, 1)
    _ragged_npz(tmp_path / "test.npz", tseqs, tlengths, tlabels)
    metrics = _train_eval_predict(
        "classification", tmp_path, "train.npz", "test.npz", "pred.npz", capsys
    )
    with np.load(tmp_path / "pred.npz") as p:
        probs, pred = p["probabilities"], p["predictions"]
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    accuracy = float(np.mean(pred == tlabels))
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # The cross-entropy too: -mean log p(true class), in float64.
    loss = float(-np.mean(np.log(probs[np.arange(40), tlabels])))
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)


def test_regression_from_long_csv_matches_numpy_on_predictions(tmp_path, capsys):
    seqs, _, _ = _sequences(80, 2, features=2)
    targets = np.array([float(s[:, 0].sum()) for s in seqs])
    _long_table(seqs, targets).to_csv(tmp_path / "train.csv", index=False)
    tseqs, _, _ = _sequences(30, 3, features=2)
    ttargets = np.array([float(s[:, 0].sum()) for s in tseqs])
    _long_table(tseqs, ttargets).to_parquet(tmp_path / "test.parquet")
    metrics = _train_eval_predict(
        "regression", tmp_path, "train.csv", "test.parquet", "pred.csv", capsys
    )
    table = pd.read_csv(tmp_path / "pred.csv")
    truth = dict(zip([f"s{i:03d}" for i in range(30)], ttargets, strict=True))
    mse = float(
        np.mean([(p - truth[i]) ** 2 for i, p in zip(table.id, table.prediction, strict=True)])
    )
    assert len(table) == 30
    assert metrics["mse"] == pytest.approx(mse, rel=1e-4)


def _reversal_pairs(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = "red blue green big small cat dog sun moon tree".split()
    out = []
    for _ in range(n):
        s = list(rng.choice(words, size=int(rng.integers(1, 5))))
        out.append({"source": " ".join(s), "target": " ".join(reversed(s))})
    return out


def _jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_translation_from_jsonl_matches_counts_on_predicted_text(tmp_path, capsys):
    _jsonl(tmp_path / "train.jsonl", _reversal_pairs(160, 0))
    test = _reversal_pairs(24, 1)
    _jsonl(tmp_path / "test.jsonl", test)
    metrics = _train_eval_predict(
        "translation", tmp_path, "train.jsonl", "test.jsonl", "out.jsonl", capsys, "max"
    )
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["source"] for x in lines] == [r["source"] for r in test]
    hyps = [x["translation"].split() for x in lines]
    refs = [r["target"].split() for r in test]
    exact = np.mean([h == r for h, r in zip(hyps, refs, strict=True)])
    clipped = np.mean(
        [sum(min(h.count(w), r.count(w)) for w in set(h)) for h, r in zip(hyps, refs, strict=True)]
    )
    assert np.mean([len(h) for h in hyps]) > 0  # the model emits words: the counts are not 0
    assert metrics["exact_match"] == pytest.approx(exact, abs=1e-6)
    assert metrics["bleu_hyp_len"] == pytest.approx(np.mean([len(h) for h in hyps]), abs=1e-5)
    assert metrics["bleu_correct_1"] == pytest.approx(clipped, abs=1e-5)
    assert metrics["bleu_ref_len"] == pytest.approx(np.mean([len(r) for r in refs]), abs=1e-5)


def test_tagging_from_a_long_table_matches_numpy_on_predictions(tmp_path, capsys):
    """A label per time step: the sign of feature ``a`` at that step."""
    frames = []
    for name, n, seed in (("train", 80, 4), ("test", 24, 5)):
        seqs, _, _ = _sequences(n, seed, features=2)
        rows = [{"id": f"s{i:03d}", "time": t, "a": x[0], "b": x[1],
                 "label": "up" if x[0] > 0 else "down"}
                for i, s in enumerate(seqs) for t, x in enumerate(s)]  # fmt: skip
        frames.append(pd.DataFrame(rows))
        frames[-1].sample(frac=1.0, random_state=0).to_csv(tmp_path / f"{name}.csv", index=False)
    metrics = _train_eval_predict("tagging", tmp_path, "train.csv", "test.csv", "out.csv", capsys)
    pred = pd.read_csv(tmp_path / "out.csv").set_index(["id", "time"])
    truth = frames[1].set_index(["id", "time"])["label"]
    assert len(pred) == len(truth) and set(pred.columns) == {"prediction", "p_down", "p_up"}
    right = (pred["prediction"] == truth.reindex(pred.index)).to_numpy()
    assert metrics["accuracy"] == pytest.approx(float(right.mean()), abs=1e-6)
    p_true = np.where(truth.reindex(pred.index) == "up", pred["p_up"], pred["p_down"])
    assert metrics["loss"] == pytest.approx(float(-np.mean(np.log(p_true))), rel=1e-4)
