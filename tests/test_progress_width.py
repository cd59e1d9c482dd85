"""Progress on a terminal too narrow for a bar (0 columns) is plain lines, not nothing."""

import io
import os

import pytest

from rnnlab.train import progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True

    def fileno(self):
        return 99


@pytest.mark.parametrize("columns, plain", [(0, True), (120, False)])
def test_plain_lines_below_the_bar_width(monkeypatch, columns, plain):
    size = os.terminal_size((columns, 24))
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: size)
    stream = FakeTerminal()
    p = progress.Progress(0, 10, stream=stream)
    p.update(5, {"loss": 1.5})
    p.close()
    assert ("step 5/10 | loss 1.5000" in stream.getvalue()) == plain
    assert "5/10" in stream.getvalue()  # the bar shows the count
