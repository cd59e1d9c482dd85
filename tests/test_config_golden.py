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


@pytest.mark.parametrize("part", ["experiments", "overrides", "file_lines"])
def test_resolved_configs_and_errors_match_the_golden_file(now, part):
    before, after = GOLDEN_DATA[part], now[part]
    assert sorted(after) == sorted(before)
    wrong = [case for case in before if after[case] != before[case]]
    assert not wrong, (
        f"{len(wrong)} differ, first {wrong[0]!r}: {after[wrong[0]]} != {before[wrong[0]]}"
    )


def test_help_of_every_key_matches_the_golden_file(now):
    assert now["help"] == GOLDEN_DATA["help"]
    assert now["describe"] == GOLDEN_DATA["describe"]
