"""The R lazy-load reader (``rnnlab.data.lazyload`` over the ``rdata`` package), on
hand-built XDR bytes and on the fetched Austen package."""

import gzip
import hashlib
import struct
import zlib

import pytest

from rnnlab.data import lazyload


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
    obj = lazyload.decode(body)
    assert obj.tolist() == ["It is a truth", None, "café"]


def test_named_list_of_integer_and_double_vectors_version_2():
    ints = _int(13) + _int(3) + _int(1) + _int(-(2**31)) + _int(7)
    reals = _int(14) + _int(2) + struct.pack(">dd", 0.5, -2.0)
    body = _header(2) + _int(19 | (1 << 9)) + _int(2) + ints + reals + _names_attr(["a", "b"])
    obj = lazyload.decode(body)
    assert obj["a"].tolist() == [1, None, 7]
    assert obj["b"].tolist() == [0.5, -2.0]


def _database(tmp_path):
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
    return tmp_path / "Rdata.rdb"


def test_lazyload_database_round_trip(tmp_path):
    objects = lazyload.read_lazyload_db(_database(tmp_path))
    assert {k: v.tolist() for k, v in objects.items()} == {"x": ["one", "two"], "y": ["three"]}


def test_a_damaged_database_is_a_clear_error(tmp_path):
    rdb = _database(tmp_path)
    raw = rdb.read_bytes()
    rdb.write_bytes(raw[:6] + bytes(len(raw) - 6))  # the first object's zlib stream zeroed
    with pytest.raises(ValueError, match="object 'x' at bytes 0-.* not a length and a zlib"):
        lazyload.read_lazyload_db(rdb)
    rdb.write_bytes(b"")
    with pytest.raises(ValueError, match="object 'x'"):
        lazyload.read_lazyload_db(rdb)


def test_bad_marker_and_truncation_are_clear_errors():
    with pytest.raises(ValueError, match="not a readable R serialisation"):
        lazyload.decode(b"A\n" + _int(3))
    with pytest.raises(ValueError, match="not a readable R serialisation"):
        lazyload.decode(_header() + _int(16) + _int(5))


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


# SHA-256 of each novel as the hand-written XDR reader that lazyload.py replaced wrote it
# (lines joined by newlines, UTF-8) from r-cran-janeaustenr_1.0.0-1_all.deb; the texts
# decoded by the rdata package hashed the same before that reader was removed.
AUSTEN_SHA256 = {
    "emma": "7c67b5985c6d0de1efaeb5d342d52cb82c38083c40e2295129e30e87ee690ebe",
    "mansfieldpark": "98bc90519cdf4ef663ad7de2734bb529435ef24f7abbde6bb1a50898871dafe9",
    "northangerabbey": "51f91bbe0517db8e65cff009b097ce0a1836124c4e0532ac19e6c0cad982abed",
    "persuasion": "8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a",
    "prideprejudice": "dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d",
    "sensesensibility": "105e1651fe93bed7130078578efd31e0c557d68667ba672ddc876f735b30fe09",
}


def test_fetched_austen_is_byte_identical_to_the_pinned_texts(data_root):
    got = {
        p.stem: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (data_root / "austen").glob("*.txt")
    }
    assert got == AUSTEN_SHA256
