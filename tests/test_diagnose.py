"""The gradient experiments' configs and the ``rnnlab diagnose`` command end to end."""

import json
import os

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.train import config as cfg_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDING = os.path.join(ROOT, "experiments", "adding.py")
COPY = os.path.join(ROOT, "experiments", "copy.py")


def test_every_sweep_variant_is_a_valid_config(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from experiments import gradient_variants as gv

    adding = gv.sweep((100, 200, 400))
    assert len(adding) == 8 * 3 * 2
    for variant in adding:
        c = cfg_lib.load(f"{ADDING}:{variant}")
        cfg_lib.validate(c)
        cell, t = variant.split(",")[:2]
        assert c.data.seq_len == int(t[2:]) and c.model.cell == gv.CELLS[cell]["cell"]
        assert c.optim.clip_norm == (0.0 if variant.endswith("noclip") else 1.0)
        if cell == "indrnn":  # the gain bound's horizon is the sequence length
            assert c.model.cell_kwargs.horizon == c.data.seq_len
    for variant in gv.sweep((100,)):
        c = cfg_lib.load(f"{COPY}:{variant}")
        cfg_lib.validate(c)
        if variant.startswith("indrnn"):
            assert c.model.cell_kwargs.horizon == 100 + 20


@pytest.mark.parametrize("variant, match", [("lstm,T=x", "T must be"), ("lsmt", "'lsmt'")])
def test_bad_variants_name_the_token(variant, match):
    with pytest.raises(ValueError, match=match):
        cfg_lib.load(f"{ADDING}:{variant}")


def test_diagnose_trains_with_the_hook_and_reports_on_the_checkpoint(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    status = main(
        [
            "diagnose",
            "--config",
            f"{ADDING}:ci",
            "--workdir",
            workdir,
            "--train",
            "--every",
            "2",
            "--cells",
            "elman,orthogonal",
            "--config.train.steps=4",
            "--config.train.eval_every=4",
            "--config.train.checkpoint_every=2",
        ]
    )
    assert status == 0
    out = os.path.join(workdir, "diagnostics")
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["checkpoint_step"] == 4
    norms = np.asarray(report["layers"]["rnn/layers/0"]["norms"])
    assert norms.shape == (20,) and np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert sorted(report["cells"]) == ["elman", "orthogonal"]
    # The orthogonal recurrence keeps the gradient norm; the Elman one lets it shrink.
    ratio = {c: report["cells"][c]["log10_first_over_last"] for c in report["cells"]}
    assert abs(ratio["orthogonal"]) < abs(ratio["elman"])
    with open(os.path.join(out, "history.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [2, 4]
    for name in ("gradient_flow", "gradient_flow_cells", "jacobian_spectrum", "gradient_heatmap"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 1000
    with open(os.path.join(out, "report.md")) as f:
        assert "| rnn/layers/0 |" in f.read()
    assert "gradient_heatmap.png" in capsys.readouterr().out


def test_results_table_reads_each_variants_summary(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from experiments import gradient_variants as gv

    for variant, mse in (("lstm,T=200", 0.004), ("elman,T=200,noclip", 0.166)):
        os.makedirs(tmp_path / variant)
        summary = {"steps": 6000, "final": {"validation": {"mse": mse}}}
        (tmp_path / variant / "summary.json").write_text(json.dumps(summary))
    rows = gv.results_table("adding", str(tmp_path)).splitlines()
    assert len(rows) == 2 + 48
    assert "| lstm | 200 | norm 1 | 0.0040 | 0.167 | yes | 6000 |" in rows
    assert "| elman | 200 | none | 0.1660 | 0.167 | no | 6000 |" in rows
    assert "| gru | 400 | none | not run | 0.167 |  |  |" in rows
