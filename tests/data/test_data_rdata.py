"""The R serialisation reader, on hand-built XDR bytes and on the fetched Austen package."""

import gzip
import struct
import zlib

import pytest

from rnnlab.data import rdata


def _int(v):
    return struct.pack(">i", v)


def _charsxp(s, utf8=True):
    if s is None:
        return _int(9) + _int(-1)
    raw = s.encode("utf-8")
    levels = (1 << 3) if utf8 else 0
    return _int(9 | (levels << 12)) + _int(len(raw)) + raw


def _header(version=3):
    out = b"X\n" + _int(version) + _int(0x040201) + _int(0x030500)
    if version == 3:
        out += _int(5) + b"UTF-8"
    return out


def _strsxp(values, attrs=b""):
    flags = 16 | ((1 << 9) if attrs else 0)
    return _int(flags) + _int(len(values)) + b"".join(_charsxp(v) for v in values) + attrs


def _names_attr(names):
    # pairlist cell with a tag: flags LISTSXP | has_tag, tag = SYMSXP "names", car, cdr = NIL
    sym = _int(1) + _charsxp("names", utf8=False)
    return _int(2 | (1 << 10)) + sym + _strsxp(names) + _int(254)


def test_character_vector_with_na_and_utf8():
    body = _header() + _strsxp(["It is a truth", None, "café"])
    obj = rdata.unserialize(body)
    assert obj.kind == "character"
    assert obj.value == ["It is a truth", None, "café"]


def test_named_list_of_integer_and_double_vectors_version_2():
    ints = _int(13) + _int(3) + _int(1) + _int(-(2**31)) + _int(7)
    reals = _int(14) + _int(2) + struct.pack(">dd", 0.5, -2.0)
    body = _header(2) + _int(19 | (1 << 9)) + _int(2) + ints + reals + _names_attr(["a", "b"])
    obj = rdata.as_dict(rdata.unserialize(body))
    assert obj["a"].value == [1, None, 7]
    assert obj["b"].value == [0.5, -2.0]


def test_lazyload_database_round_trip(tmp_path):
    first = _header() + _strsxp(["one", "two"])
    second = _header() + _strsxp(["three"])
    chunks, index = b"", []
    for payload in (first, second):
        blob = struct.pack(">I", len(payload)) + zlib.compress(payload)
        index.append((len(chunks), len(blob)))
        chunks += blob
    offsets = b"".join(
        _int(14) + _int(2) + struct.pack(">dd", float(o), float(n)) for o, n in index
    )
    variables = _int(19 | (1 << 9)) + _int(2) + offsets + _names_attr(["x", "y"])
    rdx = _header() + _int(19 | (1 << 9)) + _int(1) + variables + _names_attr(["variables"])
    (tmp_path / "Rdata.rdb").write_bytes(chunks)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(rdx))
    objects = rdata.read_lazyload_db(tmp_path / "Rdata.rdb")
    assert {k: v.value for k, v in objects.items()} == {"x": ["one", "two"], "y": ["three"]}


def test_bad_marker_and_truncation_are_clear_errors():
    with pytest.raises(ValueError, match="XDR format marker"):
        rdata.unserialize(b"A\n" + _int(3))
    with pytest.raises(ValueError, match="truncated"):
        rdata.unserialize(_header() + _int(16) + _int(5))


def test_fetched_austen_matches_the_documented_sizes(data_root):
    texts = {p.stem: p.read_text(encoding="utf-8") for p in (data_root / "austen").glob("*.txt")}
    assert sorted(texts) == [
        "emma",
        "mansfieldpark",
        "northangerabbey",
        "persuasion",
        "prideprejudice",
        "sensesensibility",
    ]
    total = sum(len(t) for t in texts.values())
    assert 4.02e6 < total < 4.04e6
    assert len(set("".join(texts.values()))) == 81
    assert 684_000 < len(texts["prideprejudice"]) < 686_000
    assert texts["prideprejudice"].startswith("PRIDE AND PREJUDICE")
    assert "It is a truth universally acknowledged" in texts["prideprejudice"][:400]
