"""``rnnlab compile --largest-batch`` agrees with direct compiles: the batch it finds fits
(exit 0) and one example per chip more does not (exit 2, with the numbers)."""

from __future__ import annotations

import json

from rnnlab.cli import main

# A recipe that compiles in seconds, widened so that its limit is a few thousand examples
# per chip (about 8 MiB each).
RECIPE = [
    *("--config", "experiments/seqmnist.py:tpu", "--topology", "v5e-8"),
    "--config.model.hidden_features=1024",
]


def test_largest_batch_fits_and_one_more_does_not(tmp_path, capsys):
    report = tmp_path / "search.json"
    assert main(["compile", *RECIPE, "--largest-batch", "--report", str(report)]) == 0
    found = json.loads(report.read_text())["largest_batch"]
    best, chips = found["per_chip_batch"], 8
    assert best > 16 and found["global_batch"] == best * chips
    # At the limit XLA rematerialises to fit; one above, libtpu names what it would need.
    assert found["memory_bytes"] <= 16 * 2**30 < found["above_memory_bytes"]
    capsys.readouterr()

    def direct(per_chip: int) -> tuple[int, dict]:
        path = tmp_path / f"direct-{per_chip}.json"
        batch = f"--config.train.batch_size={per_chip * chips}"
        status = main(["compile", *RECIPE, batch, "--report", str(path)])
        return status, json.loads(path.read_text())

    status, at = direct(best)
    assert status == 0 and at["verdict"]["fits"]
    assert at["train_step"]["memory"]["total"] == found["memory_bytes"]
    status, above = direct(best + 1)
    assert status == 2 and not above["verdict"]["fits"]
    assert "does not fit" in capsys.readouterr().err
