"""Each present unit as the rules see it (``Unit``), read poll after poll by ``UnitReader``.

The fresh ``pwr`` row counts every poll; a recent ``bat N`` table adds cells; a reading the
console stops printing keeps its last value (``HELD_READINGS``), and a unit's ``pwr N``
protection signals stand until a later ``pwr N`` shows them cleared.  ``CellCounts`` keeps how
many cells each unit has in series, as the console reports them.
"""

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ..derive import Extreme, UnitSummary, cells_extreme
from ..model import Battery, CellRow, PowerDetail, PowerRow
from ..reporting import Episodes
from .common import CELL_COUNTS, CELL_TABLE_MAX_AGE, logger, plural
from .signals import FULL_EVENT, VOLTAGE_COLUMNS, StatusWord, cell_status_words, protection, row_status_words


@dataclass(frozen=True)
class Unit:
    """One present unit as the rules see it (cell extremes from the fresh pwr row and a recent cell table)."""

    battery: Battery
    pack_voltage: Optional[float]
    current: Optional[float]
    soc: Optional[float]
    cell_high: Optional[Extreme]
    cell_low: Optional[Extreme]
    temp_high: Optional[Extreme]
    temp_low: Optional[Extreme]
    electronics: Optional[Tuple[float, str]]  # hottest of BMS and MOSFET temperature, with its label
    cell_voltages: Tuple[float, ...]  # this poll's cell table, else empty
    # The highest cell as of this poll (the pwr row, and the cell table only when read in this poll):
    # the CVL controller subtracts its overshoot from today's pack voltage, so an older table must
    # not count, or CVL would be walked down poll after poll for a cell that has come back.
    cell_high_now: Optional[Extreme]
    cell_count: Optional[int]
    states: Tuple[StatusWord, ...]
    row_gap: Optional[str]  # what the fresh pwr row lacks for charging ("no cell voltages" ...), else None
    row_gap_discharge: Optional[str]  # the same for discharging
    row: PowerRow  # the pwr row with vanished readings held from the last one
    held: Tuple[str, ...] = ()  # the readings held

    @property
    def address(self) -> int:
        return self.battery.address

    @property
    def pack_low(self) -> bool:
        """At its low cut-off by its own word: a voltage state Low / Under."""
        return any(s.column in VOLTAGE_COLUMNS and s.direction == "low" for s in self.states)

    def full(self) -> bool:
        """The BMS's own full state: SoC (Coulomb) 100 %, ``Coul. Status`` Full or the COULFULL event."""
        detail = self.battery.detail
        if detail is not None and (
            (detail.coulomb_state or "").strip().lower() == "full" or (detail.power_events or 0) & FULL_EVENT
        ):
            return True
        return self.soc is not None and self.soc >= 100.0

    def fet_off(self, key: str) -> bool:
        """Pytes ``pwr N`` prints ``CMOS Status`` / ``DMOS Status``: the BMS's own charge / discharge switch."""
        detail = self.battery.detail
        return detail is not None and detail.extra.get(key, "").strip().upper() == "OFF"

    def unseen_cell_average(self, charge: bool) -> Optional[float]:
        """Pack voltage per cell while the row lacks the highest (``charge``) / lowest cell: that cell is at
        least (at most) this average.  An unknown count counts as the cells that keep this true (16 / 15)."""
        raw = self.battery.row
        if raw is None or self.pack_voltage is None:
            return None
        if (raw.cell_voltage_high if charge else raw.cell_voltage_low) is not None:
            return None
        return self.pack_voltage / (self.cell_count or (max if charge else min)(CELL_COUNTS))

    def overshoot(self, limit: float) -> float:
        """How far the cells are above ``limit`` now: the highest cell's excess, or the sum over this poll's table."""
        single = self.cell_high_now.value - limit if self.cell_high_now is not None else 0.0
        summed = sum(v - limit for v in self.cell_voltages if v > limit)
        return max(single, summed, 0.0)


def _pick(a: Optional[Extreme], b: Optional[Extreme], highest: bool) -> Optional[Extreme]:
    if a is None or b is None:
        return a if b is None else b
    if highest:
        return b if b.value > a.value else a
    return b if b.value < a.value else a


def _row_extreme(located: Optional[Extreme], value: Optional[float], address: int, index: Optional[int]) -> Optional[Extreme]:
    """The pwr row's extreme, keeping the cell derive.py located in the table when the row has no id."""
    if value is None:
        return None
    if located is not None and abs(located.value - value) < 1e-9:
        return located
    return Extreme(value, address, index)


# pwr-row readings a unit keeps from its last row while the console prints "-" for them: a reading
# that vanishes must not lift the derating (or the stop) it caused.  Cell voltages and temperatures
# still count as missing for the blind rules (CCL 0, DCL held briefly); the held values only cap.
HELD_READINGS = (
    "current",
    "temperature",
    "cell_temp_low",
    "cell_temp_high",
    "cell_voltage_low",
    "cell_voltage_high",
    "base_state",
    "voltage_state",
    "current_state",
    "temperature_state",
    "soc",
    "battery_voltage_state",
    "battery_temperature_state",
    "mos_temperature",
    "mos_temperature_state",
    "system_alarm_state",
)
HELD_IDS = {
    "cell_temp_low": "cell_temp_low_id",
    "cell_temp_high": "cell_temp_high_id",
    "cell_voltage_low": "cell_voltage_low_id",
    "cell_voltage_high": "cell_voltage_high_id",
}


def _with_held_readings(row: PowerRow, last: Optional[PowerRow]) -> Tuple[PowerRow, Tuple[str, ...]]:
    """``row`` with each vanished reading taken from ``last`` (with its cell id), and the names held."""
    if last is None:
        return row, ()
    fill: Dict[str, object] = {}
    for name in HELD_READINGS:
        if getattr(row, name) is None and getattr(last, name) is not None:
            fill[name] = getattr(last, name)
            if name in HELD_IDS:
                fill[HELD_IDS[name]] = getattr(last, HELD_IDS[name])
    if not fill:
        return row, ()
    return dataclasses.replace(row, **fill), tuple(n for n in HELD_READINGS if n in fill)


# The extremes a unit reports: (Unit field, pwr row reading (its cell id: + "_id"), cell table
# attribute, highest?, the UnitSummary extreme derive.py located in the table).
_EXTREMES = (
    ("cell_high", "cell_voltage_high", "voltage", True, "cell_voltage_max"),
    ("cell_low", "cell_voltage_low", "voltage", False, "cell_voltage_min"),
    ("temp_high", "cell_temp_high", "temperature", True, "cell_temp_max"),
    ("temp_low", "cell_temp_low", "temperature", False, "cell_temp_min"),
)


def _recent_cells(battery: Battery, now: float) -> Tuple[Sequence[CellRow], bool]:
    """The unit's cell table while it counts (``CELL_TABLE_MAX_AGE``), else none, and whether it was
    read in this poll (then it carries the same moment as the row)."""
    table, read_at = battery.cells, battery.cells_time
    recent = table is not None and read_at is not None and 0.0 <= now - read_at <= CELL_TABLE_MAX_AGE
    cells = table.cells if (table is not None and recent) else ()
    this_poll = recent and battery.row_time is not None and read_at is not None and read_at >= battery.row_time
    return cells, this_poll


def _extreme(
    address: int,
    row: PowerRow,
    raw: PowerRow,
    cells: Sequence[CellRow],
    cells_now: Sequence[CellRow],
    extreme: Tuple[str, str, str, bool, str],
    summary: Optional[UnitSummary],
) -> Optional[Extreme]:
    """One extreme of ``_EXTREMES``: the pwr row's (``row``, readings held) against the cell table's.

    The fresh row is newer than an older table: the table counts with it only when read in this
    poll (else a cell back to normal would keep its old value, and its reason, until the next table)."""
    _, field_name, attr, highest, located = extreme
    from_row = _row_extreme(
        getattr(summary, located) if summary else None,
        getattr(row, field_name),
        address,
        getattr(row, field_name + "_id"),
    )
    table_cells = cells_now if getattr(raw, field_name) is not None else cells
    return _pick(from_row, cells_extreme(address, table_cells, attr, highest), highest)


def _electronics(row: PowerRow) -> Optional[Tuple[float, str]]:
    """The hottest of the BMS and MOSFET temperatures, with its label."""
    known = [(t, label) for t, label in ((row.temperature, "BMS"), (row.mos_temperature, "MOSFET")) if t is not None]
    return max(known) if known else None


def _row_gaps(raw: PowerRow) -> Tuple[Optional[str], Optional[str]]:
    """What the fresh pwr row lacks for charging and for discharging, else None.

    Only the pwr row is read every poll: a cell table may add cells but never stands in for it,
    and a reading held from an earlier row keeps its derating but not the right to charge."""
    no_temps = "no cell temperatures" if raw.cell_temp_low is None or raw.cell_temp_high is None else None
    if raw.cell_voltage_high is None:
        charge: Optional[str] = "no cell voltages"
    else:
        charge = "no pack voltage" if raw.voltage is None else no_temps
    return charge, "no cell voltages" if raw.cell_voltage_low is None else no_temps


def read_unit(battery: Battery, summary: Optional[UnitSummary], now: float, last: Optional[PowerRow]) -> Unit:
    """One present unit from its records, its vanished readings taken from ``last`` (its last row)."""
    raw = battery.row
    assert raw is not None  # only present units are read
    row, held = _with_held_readings(raw, last)
    cells, this_poll = _recent_cells(battery, now)
    cells_now = cells if this_poll else ()
    # An older table's cell state words give way to the row's own summary of them (B.V.St, B.T.St).
    summarised = {"Volt. State": raw.battery_voltage_state, "Temp. State": raw.battery_temperature_state}
    states = row_status_words(battery.address, row) + cell_status_words(battery.address, cells, summarised, this_poll)
    extremes = {spec[0]: _extreme(battery.address, row, raw, cells, cells_now, spec, summary) for spec in _EXTREMES}
    row_gap, row_gap_discharge = _row_gaps(raw)
    count = battery.cell_count
    return Unit(
        battery=battery,
        pack_voltage=raw.voltage,
        current=row.current,
        soc=row.soc,
        electronics=_electronics(row),
        cell_voltages=tuple(c.voltage for c in cells_now if c.voltage is not None),
        cell_high_now=_extreme(battery.address, raw, raw, cells_now, cells_now, _EXTREMES[0], summary),
        cell_count=count if count in CELL_COUNTS else None,
        states=tuple(states),
        row_gap=row_gap,
        row_gap_discharge=row_gap_discharge,
        row=row,
        held=held,
        **extremes,
    )


class UnitReader:
    """Reads each unit poll after poll, keeping what a unit's next poll may lack: its last row's
    readings (``HELD_READINGS``) and the protection signals of its last ``pwr N``."""

    def __init__(self) -> None:
        self._last_rows: Dict[int, PowerRow] = {}  # each unit's last row, vanished readings held
        self._protections: Dict[int, PowerDetail] = {}  # each unit's protection signals in its last pwr N

    def read(self, battery: Battery, summary: Optional[UnitSummary], now: float) -> Unit:
        """One unit as the rules see it, with its vanished readings and unread pwr N signals held."""
        address = battery.address
        if battery.detail is not None:
            signals = protection(battery.detail)
            if signals is None:
                self._protections.pop(address, None)
            else:
                self._protections[address] = signals
        elif address in self._protections:
            # pwr N is read on some polls only (none yet after a restart): its signals stand until it shows them cleared.
            battery = dataclasses.replace(battery, detail=self._protections[address])
        unit = read_unit(battery, summary, now, self._last_rows.get(address))
        self._last_rows[address] = unit.row
        return unit

    def readings_state(self) -> Dict[str, Dict[str, Any]]:
        """Each unit's last readings, so a reading that vanishes across a restart keeps its effect."""
        return {
            str(address): {
                name: getattr(row, name) for name in HELD_READINGS + tuple(HELD_IDS.values()) if getattr(row, name) is not None
            }
            for address, row in sorted(self._last_rows.items())
        }

    def protections_state(self) -> Dict[str, Dict[str, Any]]:
        """The protection signals of each unit's last pwr N, standing until pwr N is read again."""
        return {
            str(address): {"power_events": p.power_events, "system_fault": p.system_fault, "switches": p.extra}
            for address, p in sorted(self._protections.items())
        }

    def restore(self, readings: object, protections: object) -> None:
        """What ``readings_state`` and ``protections_state`` saved; anything malformed is ignored."""
        if isinstance(readings, Mapping):
            for address, values in readings.items():
                if str(address).isdigit() and isinstance(values, Mapping):
                    known = {k: v for k, v in values.items() if k in HELD_READINGS or k in HELD_IDS.values()}
                    self._last_rows.setdefault(int(address), PowerRow(int(address), True, **known))
        if isinstance(protections, Mapping):
            for address, saved_signals in protections.items():
                if str(address).isdigit() and isinstance(saved_signals, Mapping):
                    self._restore_protection(int(address), saved_signals)

    def _restore_protection(self, address: int, saved: Mapping[str, Any]) -> None:
        """One unit's saved pwr N signals (``protections_state``); anything malformed is ignored."""
        numbers = [saved.get(name) for name in ("power_events", "system_fault")]
        events, fault = (n if isinstance(n, int) and not isinstance(n, bool) else None for n in numbers)
        switches = saved.get("switches")
        extra = {str(k): str(v) for k, v in switches.items()} if isinstance(switches, Mapping) else {}
        signals = protection(PowerDetail(address, power_events=events, system_fault=fault, extra=extra))
        if signals is not None:
            self._protections.setdefault(address, signals)


@dataclass(frozen=True)
class Series:
    """How many cells in series each voltage rule counts with, this poll."""

    cvl: int  # the fewest: CVL and its ceilings (a parallel 15/16-cell bank charges to the 15-cell limit)
    low: int  # the most: BatteryLowVoltage (the higher cut-off)
    unknown: Optional[str]  # why charging waits (units whose count the console has not told yet), else None


class CellCounts:
    """Cells per unit as the console reports them (``bat N``, ``info N``), against ``battery.num_cells``.

    Voltages follow the console: a configured count only ever lowers CVL (the
    fewer cells win) and raises BatteryLowVoltage, and a disagreement is
    logged once.  Every count a unit reported during the run is kept, so a
    count that flips between reads can only make the limits more careful.
    Until every present unit's count is known, both 15 and 16 count (the most
    careful of each) and the caller publishes no charge current.
    """

    def __init__(self, configured: Optional[int]) -> None:
        self._configured = configured
        self._seen: Dict[int, Set[int]] = {}  # address -> counts reported
        self._noted = Episodes(logger)  # "disagreement": logged once per run

    def update(self, units: Sequence[Unit]) -> Series:
        for u in units:
            if u.cell_count is not None:
                self._seen.setdefault(u.address, set()).add(u.cell_count)
        unknown = [u.address for u in units if not self._seen.get(u.address)]
        reported = set().union(*(self._seen.get(u.address, set()) for u in units)) if units else set()
        counts = set(reported)
        if self._configured is not None:
            counts.add(self._configured)
            self._note_disagreement(reported)
        if unknown or not counts:
            counts |= set(CELL_COUNTS)
        reason = plural(unknown, "cell count not known yet") if unknown else None
        return Series(min(counts), max(counts), reason)

    def state(self) -> Dict[str, List[int]]:
        return {str(address): sorted(counts) for address, counts in sorted(self._seen.items())}

    def restore(self, saved: object) -> None:
        """Counts saved by ``state``; anything that is not a unit's list of 15 / 16 is ignored."""
        if not isinstance(saved, Mapping):
            return
        for address, counts in saved.items():
            if str(address).isdigit() and isinstance(counts, list):
                known = {c for c in counts if c in CELL_COUNTS}
                if known:
                    self._seen.setdefault(int(address), set()).update(known)

    def _note_disagreement(self, reported: Set[int]) -> None:
        if not reported or reported == {self._configured}:
            return
        self._noted.fault(
            "disagreement",
            logging.WARNING,
            "battery.num_cells is %d but the console reports %s cells: charge voltages count %d cells "
            "(the lower), BatteryLowVoltage %d; set battery.num_cells: auto to follow the console",
            self._configured,
            "/".join(str(r) for r in sorted(reported)),
            min(reported | {self._configured}),
            max(reported | {self._configured}),
        )
