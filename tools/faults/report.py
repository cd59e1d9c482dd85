"""The suite's results: one row per scenario, printed as a table."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Result:
    """One scenario.

    Attributes:
      scenario: its name.
      runs: faults injected (kills, signals, damaged checkpoints, bad inputs, ...).
      survived: runs after which everything the scenario promises held.
      data_lost: runs that lost work: a final state not bit-identical to the uninterrupted
        run, a resume from anything but the newest complete checkpoint, a metric record
        lost or repeated, or a complete checkpoint destroyed.
      messages: runs whose error or report was checked and named what it should.
      notes: what went wrong, one line per failed check.
    """

    scenario: str
    runs: int = 0
    survived: int = 0
    data_lost: int = 0
    messages: int = 0
    message_runs: int = 0
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, ok: bool, *, lost: bool = False, message: bool | None = None, note: str = ""):
        """Records one run: ``ok`` (every check passed), ``lost`` (data lost), ``message``
        (None: no message to check here; else whether it named what it should)."""
        self.runs += 1
        self.survived += int(ok and not lost)
        self.data_lost += int(lost)
        if message is not None:
            self.message_runs += 1
            self.messages += int(message)
        if note and not (ok and not lost and message is not False):
            self.notes.append(note)

    @property
    def passed(self) -> bool:
        return (
            self.runs > 0
            and self.survived == self.runs
            and self.data_lost == 0
            and self.messages == self.message_runs
        )


def table(results: list[Result]) -> str:
    """A Markdown table of ``results`` (what ``make faults`` prints)."""
    head = "| scenario | runs | survived | data lost | message checked | seconds |"
    rule = "|---|---:|---:|---:|---:|---:|"
    rows = [head, rule]
    for r in results:
        msg = f"{r.messages}/{r.message_runs}" if r.message_runs else "-"
        rows.append(
            f"| {r.scenario} | {r.runs} | {r.survived} | {r.data_lost} | {msg} | {r.seconds:.0f} |"
        )
    total = Result(
        "total",
        runs=sum(r.runs for r in results),
        survived=sum(r.survived for r in results),
        data_lost=sum(r.data_lost for r in results),
        messages=sum(r.messages for r in results),
        message_runs=sum(r.message_runs for r in results),
        seconds=sum(r.seconds for r in results),
    )
    rows.append(
        f"| **{total.scenario}** | {total.runs} | {total.survived} | {total.data_lost} | "
        f"{total.messages}/{total.message_runs} | {total.seconds:.0f} |"
    )
    return "\n".join(rows)


def failures(results: list[Result]) -> str:
    lines = []
    for r in results:
        if not r.passed:
            lines.append(f"{r.scenario}: FAILED")
            lines.extend(f"  - {n}" for n in r.notes or ["(no note)"])
    return "\n".join(lines)
