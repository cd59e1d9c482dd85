"""Progress on a terminal too narrow for a bar (0 columns) is plain lines, not nothing."""

import io
import os

from rnnlab.train import progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True

    def fileno(self):
        return 99


def test_a_zero_column_terminal_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((0, 24)))
    stream = FakeTerminal()
    p = progress.Progress(0, 10, stream=stream)
    p.update(5, {"loss": 1.5})
    p.close()
    assert "step 5/10 | loss 1.5000" in stream.getvalue()


def test_a_wide_terminal_keeps_the_bar(monkeypatch):
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((120, 24)))
    stream = FakeTerminal()
    p = progress.Progress(0, 10, stream=stream)
    p.update(5, {"loss": 1.5})
    p.close()
    assert "step 5/10" not in stream.getvalue() and "5/10" in stream.getvalue()
