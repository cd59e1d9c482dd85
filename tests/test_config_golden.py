"""Every resolved config of every experiment and variant, every key's help and the
messages of bad configs are those of the config code before the typed groups: the golden
file was written by that code (tests/config_golden.py)."""

import json

import pytest
from config_golden import GOLDEN, snapshot


@pytest.fixture(scope="module")
def now(tmp_path_factory):
    return snapshot(tmp_path_factory.mktemp("golden"))


GOLDEN_DATA = json.loads(GOLDEN.read_text())


def _flat(value, prefix=""):
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for key, inner in value.items():
        out.update(_flat(inner, f"{prefix}.{key}" if prefix else key))
    return out


@pytest.mark.parametrize("part", ["experiments", "overrides", "file_lines"])
def test_resolved_configs_and_errors_match_the_golden_file(now, part):
    before, after = GOLDEN_DATA[part], now[part]
    assert not set(before) - set(after), sorted(set(before) - set(after))
    # Experiment files added since the golden file was written have no "before"; every
    # other new case (a variant of an older experiment, an override) is a change.
    known = {case.partition(":")[0] for case in before}
    added = sorted(c for c in set(after) - set(before) if c.partition(":")[0] in known)
    assert not added or part != "experiments", added
    assert part == "experiments" or sorted(after) == sorted(before)
    wrong = [case for case in before if after[case] != before[case]]
    if wrong:
        old, new = _flat(before[wrong[0]]), _flat(after[wrong[0]])
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        diff = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:5])
        pytest.fail(f"{len(wrong)} cases differ, first {wrong[0]!r}: {diff}")


def test_help_of_every_key_matches_the_golden_file(now):
    before, after = GOLDEN_DATA["help"], now["help"]
    # A dataset or model registered since the golden file was written adds its own group.
    assert {group: after[group] for group in before} == before
    assert now["describe"] == GOLDEN_DATA["describe"]
