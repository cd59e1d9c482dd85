"""Reads an R package's lazy-load database with the ``rdata`` package.

R packages store their data sets as a lazy-load database: ``Rdata.rdx`` (a gzip-compressed,
serialised index naming each object and its ``(offset, length)`` in the database) and
``Rdata.rdb`` (the objects, each a 4-byte big-endian uncompressed length followed by a zlib
stream of one serialised object; R's ``src/main/serialize.c``, "R Internals" section 1.8).
``rdata`` (Ramos-Carreño, the maintained reader of R's serialisation format) decodes each
object; only the container, which ``rdata`` does not read, is unpacked here.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Any


def decode(data: bytes, what: str = "R data") -> Any:
    """One serialised R object (optionally gzip-compressed, as an ``.rds`` file) as Python:
    character vectors become NumPy string arrays, named lists dicts, ``NA`` ``None``.

    Raises:
      ValueError: the bytes are not a serialised R object (names ``what`` and the cause).
    """
    import rdata

    try:
        with warnings.catch_warnings():
            # A bare serialisation has no RDS magic; rdata then says it "assumed RDS".
            warnings.simplefilter("ignore", UserWarning)
            parsed = rdata.parser.parse_data(bytes(data), extension=".rds")
        return rdata.conversion.convert(parsed)
    except Exception as e:  # rdata raises struct, index and value errors alike
        raise ValueError(f"{what}: not a readable R serialisation ({type(e).__name__}: {e})") from e


def read_lazyload_db(rdb_path: str | Path) -> dict[str, Any]:
    """Reads every object of an R lazy-load database (``Rdata.rdb`` with its ``.rdx`` index).

    Returns a dict from object name to the decoded object (:func:`decode`), in the index's
    order.

    Raises:
      ValueError: an undecodable index or object, or an object whose length differs from
        the one its header records.
    """
    rdb_path = Path(rdb_path)
    index_path = rdb_path.with_suffix(".rdx")
    index = decode(index_path.read_bytes(), str(index_path))
    raw = rdb_path.read_bytes()
    objects: dict[str, Any] = {}
    for name, (offset, length) in index["variables"].items():
        name, offset, length = str(name), int(offset), int(length)  # names are NumPy strings
        chunk = raw[offset : offset + length]
        try:
            expected = struct.unpack(">I", chunk[:4])[0]
            body = zlib.decompress(chunk[4:])
        except (struct.error, zlib.error) as e:
            raise ValueError(
                f"R data: object {name!r} at bytes {offset}-{offset + length} of {rdb_path} "
                f"is not a length and a zlib stream ({e})"
            ) from e
        if len(body) != expected:
            raise ValueError(
                f"R data: object {name!r} in {rdb_path} should decompress to {expected} bytes, "
                f"received {len(body)}"
            )
        objects[name] = decode(body, f"object {name!r} in {rdb_path}")
    return objects
