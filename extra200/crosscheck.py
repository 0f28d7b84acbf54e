"""Cross-checks: which console values may be believed (pure; no I/O, no clock).

The console has no checksum.  The parser refuses most line damage (a lost
character moves a column, a garbled word is not a known word), but a digit
turned into another digit still parses.  A value that reaches the GX, or
changes a charge decision, must therefore be confirmed first:

* **by a second read**: every reply that feeds a published value is read
  twice and accepted only where the two parsed records agree exactly (a third
  read breaks a tie); ``pwr`` rows are voted one unit at a time, so one
  changing unit does not hold back the others.  Two independent corruptions
  that agree are as good as impossible, and nothing waits for the next poll;
  The confirming read of the ``pwr`` table is checked as its rows arrive: once
  every unit present (or seen before, or configured) agrees, the rest of the
  table (absent slots) is not waited for; the transport still reads it to its
  end before the next command;
* **by agreement between commands**: a unit's ``pwr`` row and its ``bat``
  table describe the same cells; when the row's cell voltage extremes
  contradict the table, the table is read again at once, and extremes that
  contradict a fresh table are not believed (nor is the table);
* **by physics**: a temperature that jumps further than a battery can heat or
  cool between two polls is held back for one poll and believed when the next
  poll confirms it (so a real fault is late by one poll at most).

A value that is not believed is *unknown* (``None``) for that poll: it is not
published (the Victron output sends ``null``, the driver shows it invalid)
and charge control treats it as a vanished reading, never as a number.
"""

import dataclasses
import re
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from .model import CellTable, PowerDetail, PowerRow

T = TypeVar("T")

# A row's identity without the unit's clock, which ticks between two reads.
_UNCOMPARED_ROW_FIELDS = ("time",)

# How far a cell voltage printed in the pwr row may be from the cell table (V).  The table
# may be up to a minute older than the row, so the cells may have moved under current;
# a corrupted digit in the first two places moves a value by 0.1 V or more.
CELL_VOLTAGE_TOLERANCE = 0.08
# More than a pack's temperature can change between polls, in °C: a cell or BMS sensor under the
# hardest use moves well under a degree per second; a MOSFET faster.  Generous on purpose: line
# noise is caught by the second read, this catches what no battery can do (25 °C read as 85 °C).
TEMPERATURE_STEP = 15.0
TEMPERATURE_RATE = 1.0  # °C per second between polls, on top of the step
MOSFET_STEP = 25.0
SOC_STEP = 10.0  # %: a BMS may re-calibrate SoC at full or empty, but not by more in one poll

_ROW_EXTREMES = ("cell_voltage_low", "cell_voltage_high", "cell_voltage_low_id", "cell_voltage_high_id")


def row_key(row: PowerRow) -> PowerRow:
    """What two reads of one ``pwr`` row must agree on."""
    return dataclasses.replace(row, **{name: None for name in _UNCOMPARED_ROW_FIELDS})


# ``pwr N`` keys that count seconds while the unit charges or discharges ("Charge Sec.", "Discharge Sec."):
# a running clock, not a value, so two reads a second apart differ in it.
_RUNNING_CLOCK_KEY = re.compile(r"\bSecs?\.?$")


def record_key(record: T) -> object:
    """What two reads of one record must agree on: all of it but the console's running clocks."""
    if isinstance(record, PowerRow):
        return row_key(record)
    if isinstance(record, PowerDetail):
        extra = {key: value for key, value in record.extra.items() if not _RUNNING_CLOCK_KEY.search(key)}
        return dataclasses.replace(record, extra=extra)
    return record


# How far two reads of one value, taken a second or so apart, may differ while the bank moves (load steps
# move the current and the voltages at once; temperatures and SoC barely move).  A digit corrupted beyond
# these is caught; one within them is as harmless as the movement itself.  By record type and field.
_MOVES: Dict[str, Dict[str, float]] = {
    "PowerRow": {
        "voltage": 2.0,
        "current": 100.0,
        "temperature": 2.0,
        "cell_temp_low": 2.0,
        "cell_temp_high": 2.0,
        "cell_voltage_low": 0.1,
        "cell_voltage_high": 0.1,
        "soc": 2.0,
        "mos_temperature": 2.0,
    },
    "CellRow": {"voltage": 0.1, "current": 100.0, "temperature": 2.0, "soc": 2.0, "coulomb": 2.0},
    "PowerDetail": {
        "voltage": 2.0,
        "current": 100.0,
        "temperature": 2.0,
        "soc": 2.0,
        "max_voltage": 2.0,
        "remaining_capacity": 2.0,
    },
}
# Which cell is the extreme (and the unit's clock) may change between two reads as the values move.
_FOLLOWS_MOVES = {"cell_voltage_low_id", "cell_voltage_high_id", "cell_temp_low_id", "cell_temp_high_id", "time"}


def close(a: object, b: object, moves: Optional[Dict[str, float]] = None) -> bool:
    """Whether two reads of one record differ by no more than the bank can move between them."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        allowed = _MOVES.get(type(a).__name__, {})
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if f.name in _FOLLOWS_MOVES and f.name not in allowed:
                continue
            if f.name in allowed and isinstance(x, (int, float)) and isinstance(y, (int, float)):
                if abs(x - y) > allowed[f.name]:
                    return False
            elif not close(x, y):
                return False
        return True
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    return a == b


def agreed(reads: Sequence[T], key: Callable[[T], object] = lambda value: value) -> Optional[T]:
    """The confirmed value of a few reads of one reply, or None while they do not agree.

    Two reads that agree exactly confirm each other (the latest of them is returned).  Values
    that move between reads (a current, a cell's charge) never agree exactly: from the third read
    on, the latest counts when it is ``close`` to the read before it.  So a corrupted read is
    outvoted when the values stand still, and caught by ``close`` when they move.
    """
    for i in range(len(reads) - 1, 0, -1):
        for j in range(i):
            if key(reads[i]) == key(reads[j]):
                return reads[i]
    if len(reads) >= 3 and close(reads[-1], reads[-2]):
        return reads[-1]
    return None


def agreed_rows(reads: Sequence[Sequence[PowerRow]]) -> Tuple[Dict[int, PowerRow], List[int]]:
    """Vote the ``pwr`` table row by row: (the confirmed row of each unit, the units not confirmed).

    A unit counts when its row of the latest read agrees with the same unit's row of an
    earlier read; the units are those of the latest read.
    """
    confirmed: Dict[int, PowerRow] = {}
    unconfirmed: List[int] = []
    if not reads:
        return confirmed, unconfirmed
    by_read = [{row.address: row for row in rows} for rows in reads]
    for address in by_read[-1]:
        versions = [rows[address] for rows in by_read if address in rows]
        row = agreed(versions, row_key)
        if row is None:
            unconfirmed.append(address)
        else:
            confirmed[address] = row
    return confirmed, unconfirmed


def confirmed_early(earlier: Sequence[Sequence[PowerRow]], first_rows: Sequence[PowerRow], needed: Set[int]) -> bool:
    """Whether the first rows of a confirming read, still arriving, already confirm every unit that matters.

    ``earlier``: the whole reads before it; ``needed``: the units present in them, seen before or
    configured.  The units after the last needed one are absent in a whole read and were never
    there: their rows cannot change what is published, so the rest of the table is not waited for.
    """
    covered = {row.address for row in first_rows}
    if not earlier or not needed or not needed <= covered:  # nothing present: no hurry, read it whole
        return False
    confirmed, _ = agreed_rows(list(earlier) + [first_rows])
    return all(address in confirmed for address in needed)


def with_rows_not_reached(first_rows: Sequence[PowerRow], whole: Sequence[PowerRow]) -> List[PowerRow]:
    """A read that stopped early, completed by a whole read's rows of the units it did not reach."""
    covered = {row.address for row in first_rows}
    return list(first_rows) + [row for row in whole if row.address not in covered]


def unknown_row(address: int) -> PowerRow:
    """A present unit whose values could not be confirmed this poll: every value unknown."""
    return PowerRow(address=address, present=True)


def _without(row: PowerRow, names: Sequence[str]) -> PowerRow:
    return dataclasses.replace(row, **{name: None for name in names})


def table_contradiction(row: PowerRow, table: Optional[CellTable]) -> Optional[str]:
    """Why the row's cell extremes and the unit's cell table cannot both be right, or None."""
    if table is None or not table.cells:
        return None
    volts = [c.voltage for c in table.cells]
    if row.cell_voltage_low is not None and row.cell_voltage_high is not None and None not in volts:
        known = [v for v in volts if v is not None]
        low, high = min(known), max(known)
        if abs(row.cell_voltage_low - low) > CELL_VOLTAGE_TOLERANCE or abs(row.cell_voltage_high - high) > CELL_VOLTAGE_TOLERANCE:
            return "pwr shows cells %.3f-%.3f V, bat %d shows %.3f-%.3f V" % (
                row.cell_voltage_low,
                row.cell_voltage_high,
                row.address,
                low,
                high,
            )
    return None


def without_cell_extremes(row: PowerRow) -> PowerRow:
    """The row with its cell voltage extremes unknown (they contradict the cell table)."""
    return _without(row, _ROW_EXTREMES)


def _table_shows(table: Optional[CellTable], name: str, value: float) -> bool:
    """Whether the cell table has ``value`` for a row field it also carries (cell temperature extremes, SoC)."""
    if table is None:
        return False
    if name in ("cell_temp_low", "cell_temp_high"):
        temps = [c.temperature for c in table.cells if c.temperature is not None]
        extreme = (min if name == "cell_temp_low" else max)(temps) if temps else None
        return extreme is not None and abs(extreme - value) <= 0.5
    if name == "soc":
        return any(c.soc is not None and abs(c.soc - value) <= 1.0 for c in table.cells)
    return False


class JumpGuard:
    """Holds back a value that jumps further than physics allows, until the next poll confirms it.

    ``check(address, row, seconds)`` returns the row with each implausible value
    unknown.  A held value is believed once a later poll shows it again (within
    the allowed step of the held value), or once the old level comes back.
    """

    def __init__(self) -> None:
        self._accepted: Dict[Tuple[int, str], float] = {}
        self._held: Dict[Tuple[int, str], float] = {}  # a jumped value waiting for the next poll

    @staticmethod
    def _limit(name: str, seconds: float) -> float:
        if name == "soc":
            return SOC_STEP
        step = MOSFET_STEP if name == "mos_temperature" else TEMPERATURE_STEP
        return step + TEMPERATURE_RATE * max(seconds, 0.0)

    FIELDS = ("temperature", "cell_temp_low", "cell_temp_high", "mos_temperature", "soc")

    def check(self, row: PowerRow, seconds: float, table: Optional[CellTable] = None) -> Tuple[PowerRow, List[str]]:
        """(the row with held values unknown, a description of each held value).

        ``table``, the unit's latest cell table: a jumped cell temperature or SoC that the table shows
        too is confirmed by it (the table was read after the change), so it is believed at once.
        """
        held: Dict[str, None] = {}
        notes: List[str] = []
        for name in self.FIELDS:
            value = getattr(row, name)
            key = (row.address, name)
            if value is None:
                continue  # a vanished reading is not a jump; the last accepted level stays for comparison
            limit = self._limit(name, seconds)
            last = self._accepted.get(key)
            pending = self._held.pop(key, None)
            if (
                last is None
                or abs(value - last) <= limit
                or (pending is not None and abs(value - pending) <= limit)
                or _table_shows(table, name, value)
            ):
                self._accepted[key] = value
                continue
            self._held[key] = value
            held[name] = None
            notes.append("%s of battery %d jumped from %s to %s" % (name.replace("_", " "), row.address, last, value))
        if held:
            row = dataclasses.replace(row, **held)
            if "cell_temp_low" in held or "cell_temp_high" in held:
                row = dataclasses.replace(
                    row, cell_temp_low=None, cell_temp_high=None, cell_temp_low_id=None, cell_temp_high_id=None
                )
        return row, notes

    def forget(self, address: int) -> None:
        """A unit that left the bank starts afresh when it comes back."""
        for key in [k for k in self._accepted if k[0] == address]:
            del self._accepted[key]
        for key in [k for k in self._held if k[0] == address]:
            del self._held[key]
