"""The ``.ts`` reader (sktime's parser, class names from the header) on hand-written files."""

import numpy as np
import pytest

from rnnlab.data.ts_format import class_names, read_ts

HEADER = """# a comment
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true Up Down
@data
"""


def write(tmp_path, body, header=HEADER):
    path = tmp_path / "toy.ts"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_variable_length_instances_keep_values_order_and_header_case(tmp_path):
    path = write(tmp_path, "1,2,3:4,5,6:Down\n0.5,-1:7,8:Up\n")
    sequences, labels, names = read_ts(path)
    assert names == ["Up", "Down"] == class_names(path)
    assert labels == ["Down", "Up"]
    np.testing.assert_array_equal(sequences[0], np.array([[1, 4], [2, 5], [3, 6]], np.float32))
    np.testing.assert_array_equal(sequences[1], np.array([[0.5, 7], [-1, 8]], np.float32))
    assert all(s.dtype == np.float32 for s in sequences)


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="toy.ts.*missing values"):
        read_ts(write(tmp_path, "1,?,3:4,5,6:Up\n"))
    with pytest.raises(ValueError, match="toy.ts.*share one length"):
        read_ts(write(tmp_path, "1,2,3:4,5:Up\n"))
    with pytest.raises(ValueError, match="toy.ts"):
        read_ts(write(tmp_path, "1,2:4,5:Sideways\n"))
    with pytest.raises(ValueError, match="toy.ts.*@classLabel"):
        class_names(write(tmp_path, "1,2:4,5:Up\n", header="@dimensions 2\n@data\n"))
