"""The poller (BankReader) against the simulator replaying recorded replies: what it asks, and how often."""

import os
import re
from typing import List

from extra200.config import BatteryConfig, SerialConfig
from extra200.framing import Reply
from extra200.poller import BankReader
from extra200.simulator import PtySimulator
from extra200.transport import Console

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "console")


def _payload(name: str) -> str:
    """A fixture's reply lines between the ``@`` and the completion line (the replaying console frames them)."""
    with open(os.path.join(FIXTURES, name), encoding="ascii") as handle:
        lines = handle.read().split("\n")
    start = lines.index("@") + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("Command completed"))
    return "\n".join(lines[start:end]) + "\n"


class CountingConsole(Console):
    """The real console, counting the commands it sends."""

    def __init__(self, url: str, **options: object) -> None:
        super().__init__(url, **dict({"baud": 115200, "command_timeout": 3}, **options))  # type: ignore[arg-type]
        self.sent: List[str] = []

    def command(self, command: str, timeout: float = None, enough=None) -> Reply:  # type: ignore[assignment]
        self.sent.append(command)
        return super().command(command, timeout, enough)


def test_a_bat_reply_that_does_not_parse_is_asked_again_once_per_cells_interval(tmp_path, caplog) -> None:
    good = _payload("bat_b_15.txt")
    # unit 1's Coulomb column in a unit nobody knows: the table cannot be trusted
    bad = re.sub(r"(\d+%)(\s+)(\d+) mAH", lambda m: ("%s %s mWH" % (m.group(1), m.group(3))).rjust(len(m.group(0))), good)
    (tmp_path / "pwr.txt").write_text(_payload("pwr_8rows_old.txt"))
    (tmp_path / "bat_1.txt").write_text(bad)
    (tmp_path / "bat_2.txt").write_text(good)
    now = [0.0]
    console = CountingConsole("pylonsim://?replay=%s" % tmp_path)
    reader = BankReader(console, SerialConfig(cells_interval=60), BatteryConfig(), clock=lambda: now[0])
    with console:
        console.wake()
        for _ in range(13):  # 0, 5, ... 60 s
            bank = reader.read()
            now[0] += 5.0
    assert bank.batteries[2].cells is not None and bank.batteries[1].cells is None
    # the first poll (twice: the retry), then once the interval has passed (twice again); never in between
    assert console.sent.count("bat 1") == 4, console.sent
    # read twice each time (both reads must agree): the first poll, and at 60 s as the oldest table
    # (a unit whose cells were never read does not take the oldest one's turn)
    assert console.sent.count("bat 2") == 4
    dropped = [r.getMessage() for r in caplog.records if "gave no confirmed reply" in r.getMessage()]
    assert len(dropped) == 1, dropped  # said once, naming the column and the value
    assert "column Coulomb" in dropped[0] and "'mWH'" in dropped[0] and "37990" in dropped[0]


def test_without_a_pwr_table_or_addresses_the_units_answering_pwr_n_are_found_once() -> None:
    """An Extra2000 (no pwr table) and no battery.addresses: units 1 and 2 answer, 3 does not; asked once."""
    console = CountingConsole("pylonsim://extra2000?drift=0", baud=19200, login_debug="auto")
    console.probe_wait = 0.4
    reader = BankReader(console, SerialConfig(), BatteryConfig())
    with console:
        console.wake()
        polls = [reader.read() for _ in range(3)]
    assert [sorted(b.address for b in bank.present()) for bank in polls] == [[1, 2]] * 3
    assert all(bank.complete and not bank.missing for bank in polls)
    assert console.sent.count("pwr 3") == 1  # the search, on the first poll only


def _table_bytes(console: CountingConsole) -> int:
    """What one whole ``pwr`` exchange costs on the line (echo, table, end, prompt)."""
    before = console.bytes_in
    assert console.command("pwr").ok
    return console.bytes_in - before


def test_the_confirming_read_of_the_pwr_table_stops_at_the_last_present_unit() -> None:
    """Three units in a 16-slot table at 19200 baud (a real pty, paced): the second read is believed
    once units 1-3 agree with the first; the absent slots (most of a second on the line) are not
    waited for, but read to their end before the poll pauses."""
    with PtySimulator("us2000c-3", drift=False, console_baud=19200) as sim:
        console = CountingConsole(sim.device, baud=19200, command_timeout=5)
        reader = BankReader(console, SerialConfig(), BatteryConfig())
        with console:
            console.wake()
            table = _table_bytes(console)
            before = console.bytes_in
            bank = reader.read_state()
            at_publish = console.bytes_in - before
            reader.read_more(deadline=0.0)  # no time for more commands: the rest of the table is read all the same
            after_more = console.bytes_in - before
            again = reader.read_state()
    assert table < at_publish < 1.6 * table  # one whole table and the first rows of the second
    assert after_more >= 2 * table - 16  # both whole (the prompt's echo of a line end aside)
    assert [b.address for b in bank.present()] == [1, 2, 3] and bank.complete
    assert [reader.batteries[a].row.present for a in range(1, 17)] == [True] * 3 + [False] * 13
    assert bank.batteries[2].row.voltage == again.batteries[2].row.voltage and again.complete
    assert console.sent == ["pwr"] * 5


def test_a_damaged_row_in_the_confirming_read_is_read_whole_and_voted_again() -> None:
    """Unit 2's voltage damaged in the second read only: no early end; a third read decides."""
    with PtySimulator("us2000c-3", drift=False, console_baud=19200) as sim:
        console = CountingConsole(sim.device, baud=19200, command_timeout=5)
        reader = BankReader(console, SerialConfig(), BatteryConfig())
        with console:
            console.wake()
            clean = reader.read_state().batteries[2].row.voltage
            sim.console.edit_replies("pwr", lambda payload: payload)  # the first read as it is
            sim.console.edit_replies("pwr", lambda payload: payload.replace(b"\n2     49", b"\n2     59", 1))
            bank = reader.read_state()
    assert sim.console.pending_edits() == 0
    assert console.sent == ["pwr"] * 5
    assert bank.batteries[2].row.voltage == clean
