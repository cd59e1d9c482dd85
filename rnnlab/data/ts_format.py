"""A reader for the ``.ts`` files of the UEA/UCR time-series classification archive.

Format (Bagnall et al., the UEA multivariate archive, 2018): ``#`` comment lines, ``@``
header lines (``@dimensions``, ``@classLabel true l1 l2 ...``, ``@data``), then one instance
per line: the channels separated by ``:``, each a comma-separated list of values, and the
class label last. Channels of one instance share a length; instances may differ in length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_ts(path: str | Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Reads a ``.ts`` file.

    Returns ``(sequences, labels, class_names)``: each sequence is float32 ``[length,
    channels]``, labels are the class strings, class names come from ``@classLabel``.
    Raises ValueError on missing values, ragged channels or a label not in the header.
    """
    path = Path(path)
    class_names: list[str] = []
    dimensions = None
    sequences, labels = [], []
    in_data = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@classlabel"):
                parts = line.split()
                if len(parts) < 3 or parts[1].lower() != "true":
                    raise ValueError(f"{path}:{number}: expected '@classLabel true ...'")
                class_names = parts[2:]
            elif low.startswith("@dimensions"):
                dimensions = int(line.split()[1])
            elif low.startswith("@data"):
                in_data = True
            continue
        *channels, label = line.split(":")
        if label not in class_names:
            raise ValueError(
                f"{path}:{number}: label must be one of {class_names}, received {label!r}"
            )
        if "?" in line or "nan" in line.lower():
            raise ValueError(f"{path}:{number}: missing values are not supported")
        rows = [np.array(c.split(","), dtype=np.float32) for c in channels]
        if len({len(r) for r in rows}) != 1:
            raise ValueError(f"{path}:{number}: channels must share one length")
        if dimensions is not None and len(rows) != dimensions:
            raise ValueError(
                f"{path}:{number}: expected {dimensions} channels, received {len(rows)}"
            )
        sequences.append(np.stack(rows, axis=1))
        labels.append(label)
    if not class_names or not sequences:
        raise ValueError(f"{path}: expected a @classLabel header and at least one instance")
    return sequences, labels, class_names
