"""A small reader for R's XDR serialisation format and lazy-load databases.

R packages store their data sets as a lazy-load database: ``Rdata.rdx`` (a gzip-compressed,
serialised index naming each object and its ``(offset, length)`` in the database) and
``Rdata.rdb`` (the objects, each a 4-byte big-endian uncompressed length followed by a zlib
stream of one serialised object). The serialisation format is described in R's
``src/main/serialize.c`` ("R Internals", section 1.8). This reader covers the vector, pairlist,
symbol, reference and environment types that data packages use; anything else raises a
``ValueError`` naming the type, so a change in the file shows up as a clear error rather than
as wrong text.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

# SEXP type codes (R's Rinternals.h) and the pseudo-types of the serialiser.
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 9, 10, 13, 14, 15, 16, 17
VECSXP, EXPRSXP, RAWSXP, S4SXP = 19, 20, 24, 25
ALTREP_SXP, ATTRLISTSXP, ATTRLANGSXP = 238, 239, 240
BASEENV_SXP, EMPTYENV_SXP = 241, 242
PERSISTSXP, PACKAGESXP, NAMESPACESXP, BASENAMESPACE_SXP = 247, 248, 249, 250
MISSINGARG_SXP, UNBOUNDVALUE_SXP, GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 251, 252, 253, 254, 255

NA_INTEGER = -(2**31)
_LATIN1_MASK, _UTF8_MASK, _BYTES_MASK = 1 << 2, 1 << 3, 1 << 1


class RObject:
    """An R value with attributes: ``value`` is the Python form, ``attributes`` a dict."""

    def __init__(self, value: Any, attributes: dict[str, Any] | None = None, kind: str = ""):
        self.value = value
        self.attributes = attributes or {}
        self.kind = kind

    def __repr__(self) -> str:
        return f"RObject({self.kind}, attributes={list(self.attributes)})"


class Symbol(str):
    """An R symbol (a name), kept apart from character data."""


class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0
        self.refs: list[Any] = []

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ValueError(
                f"R data: truncated stream, expected {n} more bytes at offset {self.pos}, "
                f"received {len(self.data) - self.pos}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more words, upper then lower 32 bits
            upper, lower = self.int(), self.int()
            n = (upper << 32) + (lower & 0xFFFFFFFF)
        return n

    def header(self) -> None:
        fmt = bytes(self._take(2))
        if fmt != b"X\n":
            raise ValueError(f"R data: expected the XDR format marker b'X\\n', received {fmt!r}")
        version = self.int()
        self.int()  # the writer's R version
        self.int()  # the oldest R version that can read it
        if version == 3:
            self._take(self.int())  # native encoding name
        elif version != 2:
            raise ValueError(f"R data: expected serialisation version 2 or 3, received {version}")

    def attributes(self, has_attr: bool) -> dict[str, Any]:
        if not has_attr:
            return {}
        attrs = self.item()
        return dict(attrs.value) if isinstance(attrs, RObject) else {}

    def charsxp(self, levels: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = bytes(self._take(n))
        if levels & _LATIN1_MASK:
            return raw.decode("latin-1")
        if levels & _BYTES_MASK:
            return raw.decode("latin-1")
        return raw.decode("utf-8")

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if kind in (NILVALUE_SXP, NILSXP):
            return None
        if kind in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, BASENAMESPACE_SXP):
            return RObject(None, kind="environment")
        if kind in (UNBOUNDVALUE_SXP, MISSINGARG_SXP):
            return None
        if kind == REFSXP:
            index = flags >> 8
            if index == 0:
                index = self.int()
            return self.refs[index - 1]
        if kind in (PERSISTSXP, PACKAGESXP, NAMESPACESXP):
            obj = RObject(self.string_vector(), kind="namespace")
            self.refs.append(obj)
            return obj
        if kind == SYMSXP:
            sym = Symbol(self.item() or "")
            self.refs.append(sym)
            return sym
        if kind == ENVSXP:
            env = RObject({}, kind="environment")
            self.refs.append(env)
            self.int()  # locked flag
            self.item()  # enclosing environment
            frame = self.item()
            hashtab = self.item()
            env.attributes = self.attributes(True)
            for part in (frame, hashtab):
                if isinstance(part, RObject) and isinstance(part.value, list):
                    for entry in part.value:
                        if isinstance(entry, RObject) and isinstance(entry.value, list):
                            env.value.update(entry.value)
            if isinstance(frame, RObject) and isinstance(frame.value, list):
                env.value.update(frame.value)
            return env
        if kind in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLISTSXP, ATTRLANGSXP):
            attrs = self.attributes(has_attr)
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            entries = [(tag, car)]
            if isinstance(cdr, RObject) and cdr.kind == "pairlist":
                entries.extend(cdr.value)
            return RObject(entries, attrs, kind="pairlist")
        if kind == CHARSXP:
            return self.charsxp(levels)
        if kind in (LGLSXP, INTSXP):
            n = self.length()
            values = list(struct.unpack(f">{n}i", self._take(4 * n)))
            values = [None if v == NA_INTEGER else v for v in values]
            if kind == LGLSXP:
                values = [None if v is None else bool(v) for v in values]
            return RObject(
                values, self.attributes(has_attr), kind="logical" if kind == 10 else "int"
            )
        if kind == REALSXP:
            n = self.length()
            values = list(struct.unpack(f">{n}d", self._take(8 * n)))
            return RObject(values, self.attributes(has_attr), kind="double")
        if kind == CPLXSXP:
            n = self.length()
            parts = struct.unpack(f">{2 * n}d", self._take(16 * n))
            values = [complex(parts[2 * i], parts[2 * i + 1]) for i in range(n)]
            return RObject(values, self.attributes(has_attr), kind="complex")
        if kind == STRSXP:
            n = self.length()
            values = [self.item() for _ in range(n)]
            return RObject(values, self.attributes(has_attr), kind="character")
        if kind in (VECSXP, EXPRSXP):
            n = self.length()
            values = [self.item() for _ in range(n)]
            return RObject(values, self.attributes(has_attr), kind="list")
        if kind == RAWSXP:
            n = self.length()
            return RObject(bytes(self._take(n)), self.attributes(has_attr), kind="raw")
        if kind == ALTREP_SXP:
            return self.altrep()
        raise ValueError(f"R data: unsupported SEXP type {kind} at offset {self.pos - 4}")

    def altrep(self) -> Any:
        info = self.item()
        state = self.item()
        attrs = self.item()
        name = str(info.value[0][1]) if isinstance(info, RObject) else "?"
        attributes = dict(attrs.value) if isinstance(attrs, RObject) else {}
        if name == "compact_intseq":
            n, start, step = (int(v) for v in state.value)
            return RObject([start + i * step for i in range(n)], attributes, kind="int")
        if name == "compact_realseq":
            n, start, step = state.value
            return RObject([start + i * step for i in range(int(n))], attributes, kind="double")
        if name.startswith("wrap_") or name == "deferred_string":
            inner = state.value[0][1]  # both keep the payload as the first pairlist cell
            if isinstance(inner, RObject):
                inner.attributes.update(attributes)
            return inner
        raise ValueError(f"R data: unsupported ALTREP class {name!r}")

    def string_vector(self) -> list[str | None]:
        if self.int() != 0:
            raise ValueError("R data: expected 0 before a persistent string vector")
        return [self.item() for _ in range(self.int())]


def unserialize(data: bytes) -> Any:
    """Decodes one XDR-serialised R object (the body of ``saveRDS``/``serialize``)."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def read_rds(path: str | Path) -> Any:
    """Reads an ``.rds`` file (gzip-compressed or plain serialised R object)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return unserialize(raw)


def names(obj: RObject) -> list[str]:
    """The ``names`` attribute of an R vector, as a Python list."""
    value = obj.attributes.get("names")
    return list(value.value) if isinstance(value, RObject) else []


def as_dict(obj: RObject) -> dict[str, Any]:
    """A named R list (``VECSXP`` with ``names``) as a Python dict."""
    keys = names(obj)
    if len(keys) != len(obj.value):
        raise ValueError(
            f"R data: expected a named list, received {len(obj.value)} values and {len(keys)} names"
        )
    return dict(zip(keys, obj.value, strict=True))


def read_lazyload_db(rdb_path: str | Path) -> dict[str, Any]:
    """Reads every object of an R lazy-load database (``Rdata.rdb`` with its ``.rdx`` index).

    Returns a dict from object name to the decoded R object, in the index's order.
    """
    rdb_path = Path(rdb_path)
    index = read_rds(rdb_path.with_suffix(".rdx"))
    variables = as_dict(index)["variables"]
    raw = rdb_path.read_bytes()
    objects: dict[str, Any] = {}
    for name, (offset, length) in zip(
        names(variables), (v.value for v in variables.value), strict=True
    ):
        offset, length = int(offset), int(length)
        chunk = raw[offset : offset + length]
        expected = struct.unpack(">I", chunk[:4])[0]
        body = zlib.decompress(chunk[4:])
        if len(body) != expected:
            raise ValueError(
                f"R data: object {name!r} in {rdb_path} should decompress to {expected} bytes, "
                f"received {len(body)}"
            )
        objects[name] = unserialize(body)
    return objects
