"""Cross-checks: a corrupted digit never reaches the records, the outputs or the charge decision.

The poller runs in process on the simulator (``pylonsim://`` at a fast line
rate); ``edit_replies`` changes digits in chosen replies the way line noise
or a faulty BMS would, framing intact, so only the cross-checks can tell.
"""

import dataclasses
import logging
import re
from typing import Any, Callable, Iterator, List, Tuple

import pytest

from extra200 import transport
from extra200.charge import ChargeController
from extra200.config import BatteryConfig, ChargeConfig, SerialConfig
from extra200.crosscheck import (
    JumpGuard,
    agreed,
    agreed_rows,
    confirmed_early,
    record_key,
    row_key,
    table_contradiction,
    with_rows_not_reached,
)
from extra200.derive import summarize_bank
from extra200.model import CellRow, CellTable, PowerDetail, PowerRow
from extra200.poller import BankReader

URL = "pylonsim://us2000c-3?drift=0&console_baud=4000000"
# The pwr row's numeric columns, as token positions in the simulator's "mos" layout.
PWR_COLUMNS = {"Volt": 1, "Curr": 2, "Tempr": 3, "Tlow": 4, "Thigh": 5, "Vlow": 6, "Vhigh": 7, "Coulomb": 12, "MosTempr": 17}


@pytest.fixture
def reader(monkeypatch: Any) -> Iterator[Tuple[BankReader, Any]]:
    monkeypatch.setattr(transport, "_POLL", 0.01)
    console = transport.Console(URL, baud=4000000, command_timeout=0.5)
    console.probe_wait = 0.05
    reader = BankReader(console, SerialConfig(cells_interval=86400, info_interval=86400), BatteryConfig())
    with console:
        console.wake()
        reader.read(full=True)
        yield reader, console._port.console  # the simulated shell behind this port


def edit_token(row: int, column: int, rewrite: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """A reply edit that rewrites one table cell: the ``column``-th token of the line whose first token is ``row``."""

    def edit(payload: bytes) -> bytes:
        lines = payload.split(b"\n")
        for i, line in enumerate(lines):
            tokens = list(re.finditer(rb"\S+", line))
            if tokens and tokens[0].group() == str(row).encode():
                token = tokens[column]
                lines[i] = line[: token.start()] + rewrite(token.group()) + line[token.end() :]
                return b"\n".join(lines)
        raise AssertionError("row %d not in the reply" % row)

    return edit


def change_digit(
    row: int,
    column: int,
    digit: int = 0,
    to: Callable[[str], str] = lambda d: str((int(d) + 5) % 10),
) -> Callable[[bytes], bytes]:
    """One digit (``digit``-th of the value, default the first) of one table cell changed, width kept."""

    def rewrite(value: bytes) -> bytes:
        at = [m.start() for m in re.finditer(rb"\d", value)][digit]
        return value[:at] + to(chr(value[at])).encode() + value[at + 1 :]

    return edit_token(row, column, rewrite)


def _rows(reader: BankReader) -> List[PowerRow]:
    return [row_key(b.row) for _, b in sorted(reader.batteries.items()) if b.row is not None]


@pytest.mark.parametrize("column", sorted(PWR_COLUMNS))
def test_one_digit_changed_in_one_pwr_reply_is_never_believed(reader: Tuple[BankReader, Any], column: str) -> None:
    poller, shell = reader
    clean = _rows(poller)
    for digit in (0, -1):  # the most and the least significant digit
        shell.edit_replies("pwr", change_digit(2, PWR_COLUMNS[column], digit))
        bank = poller.read_state()
        assert shell.pending_edits() == 0
        assert _rows(poller) == clean, column
        assert [row_key(b.row) for b in bank.present()] == [r for r in clean if r.present]


def test_the_same_digit_in_every_read_of_one_poll_is_held_back_one_poll(reader: Tuple[BankReader, Any]) -> None:
    """Thigh 25400 read as 85400 twice: no battery heats so fast; not believed, never acted on."""
    poller, shell = reader
    controller = ChargeController(ChargeConfig(), BatteryConfig())
    bank = poller.read_state()
    before = controller.update(bank, summarize_bank(bank), 0.0, True)
    shell.edit_replies("pwr", change_digit(1, PWR_COLUMNS["Thigh"], 0, to=lambda d: "8"), replies=2)
    bank = poller.read_state()
    row = bank.batteries[1].row
    assert row is not None and row.cell_temp_high is None and row.cell_temp_low is None  # unknown, not 85.4
    assert row.voltage == 49.774  # the rest of the row is believed
    limits = controller.update(bank, summarize_bank(bank), 5.0, True)
    assert limits.alarms["HighTemperature"] == 0 and limits.alarms["HighChargeTemperature"] == 0
    assert limits.discharge_current >= before.discharge_current * 0.5 and limits.discharge_current > 0
    # the next poll reads the truth again
    assert poller.read_state().batteries[1].row.cell_temp_high == 25.4


def test_a_jump_confirmed_by_the_next_poll_is_believed(reader: Tuple[BankReader, Any]) -> None:
    """A real fault (the sensor really reads 85 °C) is late by one poll, no more."""
    poller, shell = reader
    poller.read_state()
    shell.bank.set_cell_temperatures(1, [85.0] * 5)
    assert poller.read_state().batteries[1].row.cell_temp_high is None
    assert poller.read_state().batteries[1].row.cell_temp_high == 85.0


def test_a_real_cell_voltage_change_is_believed_in_the_same_poll(reader: Tuple[BankReader, Any]) -> None:
    """The row's new cell extreme contradicts the old table: the table is read again at once and agrees."""
    poller, shell = reader
    shell.bank.set_cell_voltage(1, 4, 3.60)
    bank = poller.read_state()
    unit = bank.batteries[1]
    assert unit.row.cell_voltage_high == 3.6 and unit.cells is not None and unit.cells.cells[4].voltage == 3.6


def test_pwr_cell_extremes_that_contradict_the_cell_table_are_not_believed(reader: Tuple[BankReader, Any]) -> None:
    """Vlow 2492 next to a cell table at 3.3 V: neither is believed until a fresh table agrees."""
    poller, shell = reader
    shell.edit_replies("pwr", edit_token(1, PWR_COLUMNS["Vlow"], lambda value: b"2492"), replies=2)
    bank = poller.read_state()
    unit = bank.batteries[1]
    assert unit.row.cell_voltage_low is None and unit.row.cell_voltage_high is None
    assert unit.cells is None  # the unit's cells are not published beside contradicting extremes
    assert shell.pending_edits() == 0
    controller = ChargeController(ChargeConfig(), BatteryConfig())
    limits = controller.update(bank, summarize_bank(bank), 0.0, True)
    assert limits.alarms["LowCellVoltage"] == 0
    summary = summarize_bank(bank)
    assert summary.cell_voltage_min is None or summary.cell_voltage_min.value > 3.0
    # with a clean pwr table both agree again
    bank = poller.read_state()
    assert bank.batteries[1].row.cell_voltage_low == 3.316 and bank.batteries[1].cells is not None


@pytest.mark.parametrize("cell", [0, 7, 14])
def test_one_digit_changed_in_a_cell_table_is_never_believed(reader: Tuple[BankReader, Any], cell: int) -> None:
    poller, shell = reader
    clean = poller.batteries[2].cells
    assert clean is not None
    poller.batteries[2].cells_time = None  # due again
    shell.edit_replies("bat 2", change_digit(cell, 1, 2))  # the cell's millivolts, third digit: 3318 -> 3368
    poller.read_more()
    assert shell.pending_edits() == 0
    assert poller.batteries[2].cells == clean


def test_moving_values_agree_within_what_a_bank_can_move() -> None:
    """A current that changes between reads is believed from the third read on (the latest); a corrupted
    cell voltage is not, however the other values move."""
    row = PowerRow(address=1, present=True, voltage=49.8, current=-12.3, cell_voltage_low=3.31, soc=50.0)
    reads = [row, dataclasses.replace(row, current=-12.9), dataclasses.replace(row, current=-13.4, voltage=49.7)]
    assert agreed(reads[:2]) is None and agreed(reads) == reads[-1]
    corrupt = dataclasses.replace(row, current=-13.8, cell_voltage_low=2.31)
    assert agreed(reads[:2] + [corrupt]) is None


def test_agreement_rules() -> None:
    assert agreed([1, 2]) is None and agreed([1, 2, 1]) == 1 and agreed([3, 3]) == 3
    row = PowerRow(address=1, present=True, voltage=49.0, time="2025-06-01 12:00:00")
    later = dataclasses.replace(row, time="2025-06-01 12:00:01")  # the clock ticks between two reads
    other = dataclasses.replace(row, address=2, voltage=48.0)
    wrong = dataclasses.replace(other, voltage=88.0)
    confirmed, unconfirmed = agreed_rows([[row, other], [later, wrong]])
    assert confirmed == {1: later} and unconfirmed == [2]
    confirmed, unconfirmed = agreed_rows([[row, other], [later, wrong], [row, other]])
    assert confirmed == {1: row, 2: other} and unconfirmed == []


def test_jump_guard_holds_once_and_forgets_absent_units() -> None:
    guard = JumpGuard()
    row = PowerRow(address=1, present=True, temperature=25.0, cell_temp_low=24.0, cell_temp_high=26.0, soc=50.0)
    assert guard.check(row, 5.0) == (row, [])
    hot = dataclasses.replace(row, cell_temp_high=60.0)
    held, notes = guard.check(hot, 5.0)
    assert held.cell_temp_high is None and held.cell_temp_low is None and notes
    assert guard.check(hot, 5.0)[0] == hot  # confirmed by the next poll
    assert guard.check(dataclasses.replace(row, soc=90.0), 5.0)[0].soc is None  # SoC does not jump 40 %
    guard.forget(1)
    assert guard.check(dataclasses.replace(row, soc=90.0), 5.0)[0].soc == 90.0  # a unit back starts afresh
    slow = dataclasses.replace(row, cell_temp_high=40.0)
    assert guard.check(slow, 60.0)[0].cell_temp_high == 40.0  # a minute between polls allows more


def test_table_contradiction_names_both_sides() -> None:
    table = CellTable(1, tuple(CellRow(index=i, voltage=3.49, temperature=25.0) for i in range(15)))
    row = PowerRow(
        address=1, present=True, cell_voltage_low=2.492, cell_voltage_high=3.49, cell_temp_low=24.0, cell_temp_high=26.0
    )
    assert "2.492" in table_contradiction(row, table)
    assert table_contradiction(dataclasses.replace(row, cell_voltage_low=3.45), table) is None


def test_a_jump_the_cell_table_shows_too_is_believed_at_once(reader: Tuple[BankReader, Any]) -> None:
    """Agreement between commands confirms a jump: a cell table read after the change shows it as well."""
    poller, shell = reader
    poller.read_state()
    shell.bank.set_cell_temperatures(1, [85.0] * 5)
    poller.read_more(full=True)  # the cells are read again, after the change
    row = poller.read_state().batteries[1].row
    assert row.cell_temp_high == 85.0 and row.cell_temp_low == 85.0


def test_a_unit_that_leaves_between_pwr_and_its_cell_table_does_not_stop_cell_reads(reader: Tuple[BankReader, Any]) -> None:
    """A unit gone between the pwr table and its ``bat N`` answers with an error: that is no sign that the
    firmware refuses ``bat N`` (which would stop every unit's cell reads, and leave the cross-check with
    no fresh table for good)."""
    poller, shell = reader
    shell.bank.set_absent(3)  # after this poll's pwr table showed it: the next command to it is refused
    poller._read_cells_of(3)
    assert "bat N" not in poller.rejected
    shell.bank.set_cell_voltage(2, 14, 3.44)
    bank = poller.read()
    assert bank.batteries[2].cells is not None
    assert max(c.voltage for c in bank.batteries[2].cells.cells) == 3.44


def test_a_unit_that_left_is_reported_once_until_it_answers_again(reader: Tuple[BankReader, Any], caplog: Any) -> None:
    """Its refused ``bat N`` is one INFO line while it stays away, and one more once it came back and left again."""
    poller, shell = reader
    with caplog.at_level(logging.INFO, logger="extra200.poller"):
        shell.bank.set_absent(3)
        poller._read_cells_of(3)
        poller._read_cells_of(3)
        shell.bank.set_present(3)
        poller._read_cells_of(3)  # answers: the episode ends (silently)
        shell.bank.set_absent(3)
        poller._read_cells_of(3)
    left = [r for r in caplog.records if "the unit is not there now" in r.getMessage()]
    assert [r.levelname for r in left] == ["INFO", "INFO"]
    assert all(re.fullmatch(r"'bat 3' answered '.+': the unit is not there now; asked again later", r.getMessage()) for r in left)


def test_a_confirming_read_may_end_once_every_unit_that_matters_agrees() -> None:
    units = [PowerRow(address=a, present=True, voltage=49.0 + a / 10.0) for a in (1, 2, 3)]
    absent = [PowerRow(address=a, present=False) for a in range(4, 17)]
    whole = units + absent
    assert confirmed_early([whole], units, {1, 2, 3})
    assert not confirmed_early([whole], units[:2], {1, 2, 3})  # unit 3 not in yet
    assert not confirmed_early([whole], units, {1, 2, 3, 5})  # unit 5 was seen before: its row is waited for
    damaged = [units[0], dataclasses.replace(units[1], voltage=59.2), units[2]]
    assert not confirmed_early([whole], damaged, {1, 2, 3})
    assert not confirmed_early([], units, {1, 2, 3})  # nothing to agree with
    assert not confirmed_early([absent], [absent[0]], set())  # no unit present: the table is read whole
    completed = with_rows_not_reached(units, whole)
    assert completed == whole
    confirmed, unconfirmed = agreed_rows([whole, completed])
    assert unconfirmed == [] and sorted(confirmed) == list(range(1, 17))


def test_the_consoles_running_clocks_do_not_keep_two_reads_from_agreeing() -> None:
    """``Discharge Sec.`` counts on between two reads of ``pwr N``; a changed value still disagrees."""
    detail = PowerDetail(address=1, voltage=49.774, extra={"Discharge Sec.": "1       s", "Heater": "OFF"})
    ticked = dataclasses.replace(detail, extra={"Discharge Sec.": "2       s", "Heater": "OFF"})
    assert agreed([detail, ticked], record_key) == ticked
    assert agreed([detail, dataclasses.replace(ticked, voltage=59.774)], record_key) is None
    assert (
        agreed([detail, dataclasses.replace(ticked, extra={"Discharge Sec.": "2       s", "Heater": "ON"})], record_key) is None
    )
