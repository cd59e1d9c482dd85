"""Error text fit for one line: object reprs that third-party bindings embed, removed.

pybind11 (tensorstore, under orbax) puts ``<bound method pybind11_detail_function_record_v1...
.<lambda> of <tensorstore.Future object at 0x...>>`` into its messages; the nesting defeats a
single regular expression (the older ones left ``...>>`` behind).
"""

from __future__ import annotations

import re

_OPENERS = re.compile(r"<(?:bound method |built-in method |function |[\w.]+ object at 0x)")


def strip_reprs(text: str) -> str:
    """``text`` without ``<bound method ...>``, ``<function ...>`` and ``<X object at 0x..>``
    reprs, nested ones included (the brackets are matched, not guessed)."""
    out, i = [], 0
    while True:
        m = _OPENERS.search(text, i)
        if m is None:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        depth, j = 0, m.start()
        while j < len(text):
            if text[j] == "<":
                depth += 1
            elif text[j] == ">":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1
    return "".join(out)
