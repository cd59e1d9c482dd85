"""A user's series file is read exactly or refused in one line naming the file, the line
and the column, before anything is prepared: an infinity, an ``N/A`` in a numeric column
and a short row used to pass (or crash with IndexError) and train on something else.

References: the numbers written into each file by the test, and the data directory's
listing (empty when a file is refused)."""

import math

import numpy as np
import pytest

from rnnlab import data
from rnnlab.data import forecast


def write(tmp_path, text: str):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


def test_a_good_file_reads_back_its_numbers_and_skips_its_date_column(tmp_path):
    path = write(tmp_path, "date,a,b\n2020-01,1.5,2\n2020-02,,4\n2020-03,3,-6e2\n")
    values, names = forecast.read_series_file(path)
    assert names == ["a", "b"]
    want = np.array([[1.5, 2.0], [math.nan, 4.0], [3.0, -600.0]])
    np.testing.assert_array_equal(values, want)


@pytest.mark.parametrize(
    "text, says",
    [
        ("date,a,b\n2020-01,1,2\n2020-02,inf,4\n", "line 3, column 'a': 'inf'"),
        ("date,a,b\n2020-01,1,2\n2020-02,1e999,4\n", "line 3, column 'a': '1e999'"),
        ("date,a,b\n2020-01,1,2\n2020-02,3,N/A\n2020-03,4,5\n", "line 3, column 'b': 'N/A'"),
        ("date,a,b\n2020-01,1,2\n2020-02,3\n", "line 3 has 2 cells, expected 3"),
        ("a,b\n1,2\n\n3,4,5\n", "line 4 has 3 cells, expected 2"),
    ],
)
def test_a_bad_cell_or_row_is_named_with_file_line_and_column(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        forecast.read_series_file(path)
    assert says in str(info.value) and str(path) in str(info.value)
    assert "IndexError" not in str(info.value)


def test_an_infinite_value_in_an_npy_file_is_named(tmp_path):
    path = tmp_path / "series.npy"
    np.save(path, np.array([[1.0, 2.0], [3.0, np.inf]]))
    with pytest.raises(ValueError, match=r"row 2, column '1'"):
        forecast.read_series_file(path)


def test_a_bad_file_is_refused_before_anything_is_prepared(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n3,N/A\n5,6\n")
    data_dir = tmp_path / "prepared"
    data_dir.mkdir()
    cfg = {"name": "csv_series", "path": str(path), "data_dir": str(data_dir), "seq_len": 2}
    with pytest.raises(ValueError, match=r"line 3, column 'b'"):
        data.info(cfg)
    assert list(data_dir.rglob("*")) == []
