"""The results table (experiments/results/: run.py, table.py, rows.py) against fixture runs, the
row configs, and the accelerator configs' plumbing on ``tfds.testing.mock_data``."""

import json
import math
import os

import pytest

from rnnlab.train import config as cfg_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def exp(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from experiments.results import rows, table
    from experiments.results import run as results

    return rows, table, results


def _write_run(workdir, summary, **evals):
    os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f)
    for split, values in evals.items():
        with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
            json.dump(values, f)


def _summary(steps=6000, **extra):
    return {"steps": steps, "wall_time_s": 61.5, "parameters": 1234, "stop_reason": "completed"}


# -- reading runs --------------------------------------------------------------------------------
def test_lookup_reads_dotted_paths_and_names_what_is_missing(exp):
    _, table, _ = exp
    files = {"summary": {"best": {"metrics": {"mse": 0.004}}}, "eval_test": {"accuracy": 0.9}}
    assert table.lookup(files, "summary:best.metrics.mse") == 0.004
    assert table.lookup(files, "eval_test:accuracy") == 0.9
    with pytest.raises(KeyError, match="eval_validation.json not written"):
        table.lookup(files, "eval_validation:accuracy")
    with pytest.raises(KeyError, match="no 'best.metrics.mae'"):
        table.lookup(files, "summary:best.metrics.mae")
    with pytest.raises(ValueError, match="<file>:<dotted.key>"):
        table.lookup(files, "summary")


def test_record_from_fixture_run_holds_metric_baselines_and_sample(exp, tmp_path):
    rows, table, _ = exp
    row = rows.by_key()["forecast-co2"]
    mase = {"model": 0.8, "seasonal_naive": 1.25, "arima": 0.9, "ets": 1.1, "theta": 1.0}
    report = {k: {"mase": v, "mae": 2 * v, "rmse": 3 * v} for k, v in mase.items()}
    _write_run(str(tmp_path), {**_summary(3000), "report": report, "sample": "abc"})
    record = table.record_from_run(row, table.read_run_files(str(tmp_path)))
    assert record["metric"] == 0.8 and record["steps"] == 3000 and record["sample"] == "abc"
    assert record["baselines"] == {
        "seasonal naive (same run)": 1.25,
        "statsforecast AutoARIMA on 4 Fourier pairs (same run)": 0.9,
        "statsforecast MSTL + AutoETS (same run)": 1.1,
        "statsforecast AutoTheta (same run)": 1.0,
    }
    # MAE and RMSE (original units) of the model and of every baseline go to the notes.
    assert record["extras"]["model test MAE (ppm)"] == 1.6
    assert record["extras"]["Theta test RMSE (ppm)"] == 3.0


# -- formatting ----------------------------------------------------------------------------------
def test_numbers_are_formatted(exp):
    _, table, _ = exp
    assert table.fmt_value(0.97312, percent=True) == "97.3 %"
    assert table.fmt_value(0.16666666, digits=4) == "0.1667"
    assert table.fmt_value(0.000123456, digits=4) == "1.23e-04"
    assert table.fmt_value(82.7, digits=1) == "82.7"
    assert table.fmt_value(None) == "—" and table.fmt_value(float("nan")) == "—"
    assert table.fmt_duration(754.2) == "12 min 34 s"
    assert table.fmt_duration(42) == "42 s"
    assert table.fmt_duration(3 * 3600 + 125) == "3 h 02 min"


def _records(table, rows):
    """Fixture records: some rows run, one failed, the rest absent."""
    ok = {"status": "ok", "hardware": "CPU: test, 2 cores", "wall_time_s": 90.0, "steps": 6000}
    return {
        "adding-lstm-T200": {
            **ok,
            "metric": 0.0021,
            "figures": ["results/figures/adding-lstm-T200-loss.png"],
        },
        "adding-elman-T200": {**ok, "metric": 0.1671},
        "adding-gru-T200": {**ok, "metric": 0.00042},
        "mnist1d-gru": {**ok, "metric": 0.965, "repeat": {"metric": 0.965, "identical": True}},
        "mnist1d-flax-gru": {**ok, "metric": 0.950},
        "forecast-co2": {
            **ok,
            "metric": 0.8,
            "baselines": {
                "seasonal naive (same run)": 1.25,
                "statsforecast AutoARIMA on 4 Fourier pairs (same run)": 0.7,
            },
        },
        "charlm-recipe": {**ok, "metric": 2.1, "sample": "It is a truth universally"},
        "japanese-vowels": {"status": "failed", "error": "exit status 1: boom"},
    }


def test_table_has_every_column_and_one_line_per_row(exp):
    rows, table, _ = exp
    text = table.render(rows.ROWS, _records(table, rows), header="# Results")
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| Experiment"))
    assert [c.strip() for c in lines[head].strip("|").split("|")] == list(table.COLUMNS)
    body = [ln for ln in lines[head + 2 :] if ln.startswith("| ")]
    assert len(body) == len(rows.ROWS)
    for line, row in zip(body, rows.ROWS, strict=True):
        assert line.count(" | ") == len(table.COLUMNS) - 1, line
        assert f"--workdir workdirs/results/{row.key}" in line
    assert text.startswith("# Results")


def test_rows_without_numbers_say_why(exp):
    rows, table, _ = exp
    text = table.render(rows.ROWS, _records(table, rows))
    line = {r.key: ln for r, ln in zip(rows.ROWS, _body(text), strict=True)}
    assert "failed: exit status 1: boom" in line["japanese-vowels"]
    assert (
        "(a long CPU row): `python -m experiments.results --only copy-lstm-T100`"
        in (line["copy-lstm-T100"])
    )
    assert (
        "not run yet: `python -m experiments.results --only mnist1d-lstm`" in line["mnist1d-lstm"]
    )
    assert "not run: needs an accelerator" in line["seqmnist-irnn"]
    assert "cannot be fetched" in text  # the accelerator rows' note


def _body(text):
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| Experiment"))
    return [ln for ln in lines[head + 2 :] if ln.startswith("| ")][: len(lines)]


def test_results_are_formatted_and_compared_with_their_targets(exp):
    rows, table, _ = exp
    text = table.render(rows.ROWS, _records(table, rows))
    line = {r.key: ln for r, ln in zip(rows.ROWS, _body(text), strict=True)}
    assert "**0.0021** validation MSE" in line["adding-lstm-T200"]
    assert "solved (< 0.010)" in line["adding-lstm-T200"]
    assert "not solved" in line["adding-elman-T200"]
    assert "a control, expected to miss" in line["adding-elman-T200"]
    assert "a control" not in line["adding-lstm-T200"]
    assert "**4.20e-04** validation MSE" in line["adding-gru-T200"]
    assert "0.1667" in line["adding-elman-T200"]  # the trivial baseline, 1/6
    assert "[loss](results/figures/adding-lstm-T200-loss.png)" in line["adding-lstm-T200"]
    assert "**96.5 %** test accuracy (rerun: identical)" in line["mnist1d-gru"]
    assert "GRU (Greydanus 2020): 91.0 %" in line["mnist1d-gru"]
    assert "yes: beats GRU" in line["mnist1d-gru"]
    # The Flax peer row shows rnnlab's GRU of the same invocation beside it.
    assert "rnnlab GRU (same budget): 96.5 %" in line["mnist1d-flax-gru"]
    assert "seasonal naive (same run): 1.250" in line["forecast-co2"]
    # The reference column names the library and the model of each baseline.
    assert "statsforecast AutoARIMA on 4 Fourier pairs (same run): 0.700" in line["forecast-co2"]
    assert "yes: beats seasonal naive" in line["forecast-co2"]
    # The recipe's peer (the unregularised run) is missing: unknown, not a false verdict.
    assert "same model unregularised (same run): unknown" in line["charlm-recipe"]
    assert "It is a truth universally" in text.split("## Samples")[1]
    assert "| 6000 | 1 min 30 s |" in line["adding-lstm-T200"]


# -- the rows ------------------------------------------------------------------------------------
def test_every_row_names_a_loadable_config_and_valid_references(exp):
    rows, _, _ = exp
    from experiments.results import row_types

    keys = rows.by_key()
    assert {"make", "long", "accelerator"} == {r.tier for r in rows.ROWS}
    for row in rows.ROWS:
        config = cfg_lib.load(os.path.join(ROOT, row.config))
        cfg_lib.override(config, row.overrides)
        assert config.seed == 0, row.key
        for b in row.baselines:
            if b.path.startswith("row:"):
                assert b.path[4:] in keys, row.key
        assert any(b.target for b in row.baselines) or row.key == "charlm-plain", row.key
        if row.eval_split:
            assert row.metric.path.startswith(f"eval_{row.eval_split}:"), row.key
    assert math.isclose(row_types.copy_baseline(100), 10 * math.log(8) / 120)


def test_selection_by_tier_and_key(exp):
    rows, _, results = exp
    make = results.select("make", "")
    assert make and all(r.tier == "make" for r in make)
    both = results.select("long", "")
    assert len(both) > len(make) and all(r.tier != "accelerator" for r in both)
    assert [r.key for r in results.select("make", "mnist1d-gru")] == ["mnist1d-gru"]
    with pytest.raises(SystemExit, match="unknown rows"):
        results.select("make", "nope")


# -- the runner, on a fixture command --------------------------------------------------------------
def test_run_row_records_numbers_config_and_figures(exp, tmp_path, monkeypatch):
    rows, table, results = exp
    row = rows.by_key()["japanese-vowels"]

    def fake_command(args, log):
        # What `rnnlab train` then `rnnlab eval` leave in the workdir.
        workdir = args[args.index("--workdir") + 1]
        if args[0] == "train":
            _write_run(workdir, _summary(1500))
            with open(os.path.join(workdir, "config.json"), "w") as f:
                json.dump({"seed": 0}, f)
            with open(os.path.join(workdir, "plots", "loss.png"), "wb") as f:
                f.write(b"png")
        else:
            assert args[-2:] == ["--checkpoint", "latest"]
            _write_run(workdir, _summary(1500), test={"accuracy": 0.973, "step": 1500})
        return 0, 1.5

    monkeypatch.setattr(results, "run_command", fake_command)
    monkeypatch.setattr(results, "EXPERIMENTS", str(tmp_path))
    monkeypatch.setattr(results, "FIGURES", str(tmp_path / "results" / "figures"))
    monkeypatch.setattr(results, "CONFIGS", str(tmp_path / "configs"))
    record = results.run_row(row, str(tmp_path / "work" / row.key))
    assert record["status"] == "ok" and record["metric"] == 0.973
    assert record["checkpoint_step"] == 1500 and record["cpu_time_s"] == 3.0
    # Links relative to experiments/README.md, where the table is.
    assert record["figures"] == ["results/figures/japanese-vowels-loss.png"]
    assert (tmp_path / "results" / "figures" / "japanese-vowels-loss.png").read_bytes() == b"png"
    assert json.loads((tmp_path / "configs" / "japanese-vowels.json").read_text()) == {"seed": 0}
    assert record["hardware"].startswith("CPU: ")

    monkeypatch.setattr(results, "run_command", lambda args, log: (1, 0.0))
    failed = results.run_row(row, str(tmp_path / "work" / row.key))
    assert failed["status"] == "failed" and failed["error"].startswith("exit status 1")


# -- accelerator configs: plumbing on mock data ----------------------------------------------------
@pytest.mark.parametrize("spec", ["seqmnist.py:small", "wordlm.py:small"])
def test_accelerator_configs_train_on_mock_data(spec, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from rnnlab.train import train

    # The fetched corpora (make data) serve word-level configs; never fetch them again here.
    if not os.environ.get("RNNLAB_DATA_DIR"):
        monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "data"))
    config = cfg_lib.load(os.path.join(ROOT, "experiments", spec))
    with tfds.testing.mock_data(num_examples=24):
        summary = train(config, str(tmp_path / "run"))
    assert summary["steps"] == config.train.steps and summary["stop_reason"] == "completed"
    validation = summary["final"]["validation"]
    assert math.isfinite(validation["loss"]), validation


def test_extras_of_a_run_go_to_the_notes(exp, tmp_path):
    """The character LM rows score train and test splits: both land in the record, the
    training-set figure in the row's notes (the train/validation gap)."""
    rows, table, _ = exp
    row = rows.by_key()["charlm-recipe"]
    summary = {
        **_summary(3000),
        "best": {"metrics": {"bpc": 1.95}},
        "final": {"train": {"loss": math.log(2) * 1.5}},
    }
    _write_run(
        str(tmp_path), summary, test={"bpc": 1.97, "step": 2750}, train={"bpc": 1.61, "step": 2750}
    )
    record = table.record_from_run(row, table.read_run_files(str(tmp_path)))
    assert record["metric"] == 1.97 and record["checkpoint_step"] == 2750
    assert record["extras"]["training-split bpc"] == 1.61
    assert math.isclose(record["extras"]["last training-batch bpc"], 1.5)
    assert [c[:4] for c in row.commands()] == [
        ["train", "--config", row.config, "--workdir"],
        ["eval", "--workdir", "workdirs/results/charlm-recipe", "--split"],
        ["eval", "--workdir", "workdirs/results/charlm-recipe", "--split"],
    ]
    text = table.render(rows.ROWS, {row.key: {**record, "status": "ok"}})
    assert "training-split bpc 1.610, validation bpc 1.950" in text


# -- the records and the package layout -----------------------------------------------------------
def test_records_and_figures_live_in_the_results_package(exp):
    """experiments/ holds one config per experiment; the machinery, records.json, configs/ and
    figures/ are in experiments/results/, and every figure a record links exists there."""
    _, _, results = exp
    here = os.path.join(ROOT, "experiments", "results")
    assert results.RESULTS == os.path.join(here, "records.json")
    assert results.README == os.path.join(ROOT, "experiments", "README.md")
    assert results.FIGURES == os.path.join(here, "figures")
    assert results.CONFIGS == os.path.join(here, "configs")
    records = results.load_records()
    assert records, "records.json is empty or missing"
    for key, record in records.items():
        for fig in record.get("figures", []):
            assert os.path.exists(os.path.join(ROOT, "experiments", fig)), (key, fig)
        if record.get("status") == "ok":
            assert os.path.exists(os.path.join(here, "configs", f"{key}.json")), key
    with open(results.README) as f:
        readme = f.read()
    assert "(results/figures/" in readme and "(figures/" not in readme


def test_package_runs_as_a_module(exp):
    """``python -m experiments.results`` goes through the package's __main__."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "experiments.results", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert out.returncode == 0, out.stderr
    assert "--only" in out.stdout and "--no-run" in out.stdout


def test_figure_across_rows_is_kept_when_a_recorded_row_has_no_workdir(exp, tmp_path):
    """Redrawing the adding curves from one new run would drop the recorded cells' curves."""
    from experiments.results.curves import GROUPS, plot_group

    group = next(g for g in GROUPS if len(g.rows) > 1)
    out = tmp_path / "figures"
    out.mkdir()
    (out / f"{group.name}.png").write_bytes(b"old")
    work = tmp_path / "work" / group.rows[0]
    work.mkdir(parents=True)
    (work / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "split": "validation", group.metric: 0.5}) + "\n"
    )
    path = plot_group(group, str(tmp_path / "work"), str(out), recorded=set(group.rows))
    assert (out / f"{group.name}.png").read_bytes() == b"old" and path.endswith(".png")
    plot_group(group, str(tmp_path / "work"), str(out), recorded={group.rows[0]})
    assert (out / f"{group.name}.png").read_bytes() != b"old"  # all recorded rows present
