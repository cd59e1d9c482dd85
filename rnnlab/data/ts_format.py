"""The ``.ts`` files of the UEA/UCR time-series classification archive, read with sktime.

Format (Bagnall et al., the UEA multivariate archive, 2018): ``#`` comment lines, ``@``
header lines (``@dimensions``, ``@classLabel true l1 l2 ...``, ``@data``), then one instance
per line: the channels separated by ``:``, each a comma-separated list of values, and the
class label last. Channels of one instance share a length; instances may differ in length.
sktime's ``load_from_tsfile`` parses the instances; it lower-cases the labels, so the class
names and their order (the label ids) come from the ``@classLabel`` header, read here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def class_names(path: str | Path) -> list[str]:
    """The class names of the ``@classLabel true ...`` header, in the file's order.

    Raises:
      ValueError: no such header before ``@data``.
    """
    with open(path, encoding="utf-8") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                parts = line.split()
                if len(parts) >= 3 and parts[1].lower() == "true":
                    return parts[2:]
                break
            if low.startswith("@data"):
                break
    raise ValueError(f"{path}: expected a '@classLabel true <names>' header before @data")


def read_ts(path: str | Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Reads a ``.ts`` file.

    Returns ``(sequences, labels, class_names)``: each sequence is float32 ``[length,
    channels]``, labels are the class strings as the header writes them, class names come
    from ``@classLabel``.
    Raises ValueError on missing values, ragged channels or a label not in the header.
    """
    from sktime.datasets import load_from_tsfile

    names = class_names(path)
    try:
        frame, found = load_from_tsfile(str(path), return_data_type="nested_univ")
    except (OSError, ValueError) as e:  # sktime raises IOError for malformed files
        raise ValueError(f"{path}: {e}") from None
    by_lower = {n.lower(): n for n in names}
    sequences, labels = [], []
    for i, label in enumerate(found):
        if label not in by_lower:
            raise ValueError(f"{path}: instance {i}: label must be one of {names}, got {label!r}")
        channels = [np.asarray(c, dtype=np.float32) for c in frame.iloc[i]]
        if len({len(c) for c in channels}) != 1:
            raise ValueError(f"{path}: instance {i}: channels must share one length")
        sequence = np.stack(channels, axis=1)
        if np.isnan(sequence).any():
            raise ValueError(f"{path}: instance {i}: missing values are not supported")
        sequences.append(sequence)
        labels.append(by_lower[label])
    return sequences, labels, names
