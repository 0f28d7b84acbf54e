"""Derived values: per-unit and whole-bank figures computed from the parsed records.

Pure functions over ``model`` records; no I/O, no clock.  ``summarize_bank``
makes one poll's snapshot: a frozen ``BankSummary`` of every figure the outputs
show (Victron JSON, Home Assistant, status file, database) and the charge limits
read: extremes with their cell ids, power, SoC, time to empty / full, stored
energy, module and cell counts.  Each figure is computed here once; the outputs
read it and compute nothing of their own, and the parsed records are left as read.

Cell ids name the battery and the cell, 1-based like Victron's
``Voltages.Cell1``: ``B2C7`` is the seventh cell (console index 6) of unit 2.
"""

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from .model import Bank, Battery, CellRow, CellTable


def cell_id(address: int, index: Optional[int]) -> str:
    """``B<address>C<n>`` with the 1-based cell number, or ``B<address>`` when the cell is unknown."""
    return "B%dC%d" % (address, index + 1) if index is not None else "B%d" % address


@dataclass(frozen=True)
class Extreme:
    """A minimum or maximum with where it was found."""

    value: float
    address: int
    cell: Optional[int]  # 0-based console index, None when only the unit is known

    @property
    def id(self) -> str:
        return cell_id(self.address, self.cell)


@dataclass(frozen=True)
class CellExtremes:
    """The lowest and highest cell voltage and temperature of one unit's last ``bat N`` table alone."""

    address: int
    voltage_min: Optional[Extreme]
    voltage_max: Optional[Extreme]
    temp_min: Optional[Extreme]
    temp_max: Optional[Extreme]

    @property
    def voltage_delta(self) -> Optional[float]:
        return _spread(self.voltage_min, self.voltage_max, 3)

    @property
    def temp_delta(self) -> Optional[float]:
        return _spread(self.temp_min, self.temp_max, 2)


@dataclass(frozen=True)
class RowEnd:
    """One end of a unit's cells as its ``pwr`` row prints it (value, 0-based cell), each part the row
    leaves out taken from the unit's derived extreme; None where neither knows it."""

    value: Optional[float]
    cell: Optional[int]


@dataclass(frozen=True)
class RowEnds:
    """The four ends of a unit's ``pwr`` row (the database's columns), by the row's attribute names.

    Not always the unit's extremes (``UnitSummary.cell_voltage_min`` ...): those come as a pair from
    the row when it prints the low end, else both from the cell table, while each end here keeps the
    row's own value whenever the row prints it."""

    cell_voltage_low: RowEnd
    cell_voltage_high: RowEnd
    cell_temp_low: RowEnd
    cell_temp_high: RowEnd


@dataclass(frozen=True)
class UnitSummary:
    """One unit's figures, in SI units; None where unknown."""

    address: int
    voltage: Optional[float]
    current: Optional[float]
    power: Optional[float]  # W, + charging
    soc: Optional[float]
    temperature: Optional[float]
    capacity: Optional[float]  # installed Ah
    remaining: Optional[float]  # Ah from SoC x capacity
    cell_voltage_min: Optional[Extreme]
    cell_voltage_max: Optional[Extreme]
    cell_temp_min: Optional[Extreme]
    cell_temp_max: Optional[Extreme]
    mos_temperature: Optional[float]
    cell_voltages: Tuple[Optional[float], ...]  # from the latest bat N, in console order
    cell_balancing: Tuple[Optional[bool], ...]  # each cell's BAL flag, same order; () where not printed
    balancing: Optional[bool]  # any cell balancing
    cycle_count: Optional[int]
    soh: Optional[float]
    consumed: Optional[float]  # Ah taken out: capacity - remaining, never below 0
    time_to_empty: Optional[float]  # s at the present discharge current; None when not discharging
    time_to_full: Optional[float]  # s at the present charge current; None when not charging
    cell_count: Optional[int]  # cells in series as the console tells (bat N, else info N)
    stored_energy: Optional[float]  # Wh at the nominal voltage (``stored_energy_wh``), 15 cells until told
    cell_voltage_sum: Optional[float]  # V, when every cell of the table is known
    cell_voltage_average: Optional[float]  # V, of the cells known
    cells_balancing: Optional[int]  # how many cells balance; None where BAL is not printed
    cell_table: CellExtremes  # the last bat N alone
    row_ends: RowEnds  # the pwr row's own ends, completed from the extremes

    @property
    def cell_voltage_delta(self) -> Optional[float]:
        return _spread(self.cell_voltage_min, self.cell_voltage_max, 3)


@dataclass(frozen=True)
class BankSummary:
    """One poll's snapshot: the bank as one battery (the Victron bank topic, the charge limits), its
    present units (``units``) and the last cell table of every unit; built by ``summarize_bank``."""

    units: Tuple[UnitSummary, ...]  # present units, by address
    voltage: Optional[float]  # mean of the units (they are in parallel)
    current: Optional[float]  # sum
    power: Optional[float]  # sum of each unit's V x I
    soc: Optional[float]  # capacity-weighted
    temperature: Optional[float]  # mean BMS temperature
    capacity: Optional[float]  # installed Ah, sum
    remaining: Optional[float]  # Ah, sum
    cell_voltage_min: Optional[Extreme]
    cell_voltage_max: Optional[Extreme]
    cell_temp_min: Optional[Extreme]
    cell_temp_max: Optional[Extreme]
    mos_temperature: Optional[float]  # hottest MOSFET
    balancing: Optional[bool]
    cycle_count: Optional[int]  # highest of the units
    soh: Optional[float]  # lowest of the units
    consumed: Optional[float]  # Ah
    time_to_empty: Optional[float]  # s
    time_to_full: Optional[float]  # s
    stored_energy: Optional[float]  # Wh, sum of the units
    units_offline: int  # expected units absent this poll
    cells_per_battery: Optional[int]  # the most cells any present unit has told, else battery.num_cells (None: auto)
    cell_tables: Tuple[CellExtremes, ...]  # every unit of the bank with its last bat N, absent ones too, by address

    @property
    def units_online(self) -> int:
        return len(self.units)

    @property
    def cell_voltage_delta(self) -> Optional[float]:
        return _spread(self.cell_voltage_min, self.cell_voltage_max, 3)

    @property
    def publishable(self) -> bool:
        """A unit online and the three figures every Victron message needs known (not all unconfirmed)."""
        return self.units_online > 0 and None not in (self.voltage, self.power, self.soc)

    def cell_table(self, address: int) -> CellExtremes:
        """The extremes of the last ``bat N`` of unit ``address`` (all None without one)."""
        for table in self.cell_tables:
            if table.address == address:
                return table
        return CellExtremes(address, None, None, None, None)


def _spread(low: Optional[Extreme], high: Optional[Extreme], digits: int) -> Optional[float]:
    if low is None or high is None:
        return None
    return round(high.value - low.value, digits)


MIN_CURRENT_FOR_TIME = 0.5  # A: below this the bank counts as resting (no time to empty / full)
NOMINAL_CELL_VOLTAGE = 3.2  # V, LiFePO4: 15 cells = 48 V, 16 cells = 51.2 V (the rated kWh)
ASSUMED_CELLS = 15  # cells in series until the console or battery.num_cells tells (display only, never a limit)


def _pick(values: Iterable[Optional[Extreme]], highest: bool) -> Optional[Extreme]:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return (max if highest else min)(known, key=lambda e: e.value)


def _cell_extreme(
    address: int, value: Optional[float], index: Optional[int], cells: Sequence[CellRow], attr: str
) -> Optional[Extreme]:
    """An extreme from the ``pwr`` row (fresh every poll), located in the cell table when the row has no id."""
    if value is None:
        return None
    if index is None:
        matches = [c.index for c in cells if getattr(c, attr) is not None and abs(getattr(c, attr) - value) < 1e-6]
        if len(matches) >= 1:
            index = matches[0]
    return Extreme(value, address, index)


def cells_extreme(address: int, cells: Sequence[CellRow], attr: str, highest: bool) -> Optional[Extreme]:
    """The lowest (highest) ``attr`` of a cell table, with its cell: the first in table order on a tie."""
    known = [(getattr(c, attr), c.index) for c in cells if getattr(c, attr) is not None]
    if not known:
        return None
    value, index = (max if highest else min)(known, key=lambda pair: pair[0])
    return Extreme(value, address, index)


def table_extremes(address: int, table: Optional[CellTable]) -> CellExtremes:
    """The extremes of one ``bat N`` table alone (all None without a table)."""
    cells: Sequence[CellRow] = table.cells if table is not None else ()
    return CellExtremes(
        address=address,
        voltage_min=cells_extreme(address, cells, "voltage", highest=False),
        voltage_max=cells_extreme(address, cells, "voltage", highest=True),
        temp_min=cells_extreme(address, cells, "temperature", highest=False),
        temp_max=cells_extreme(address, cells, "temperature", highest=True),
    )


def _row_end(value: Optional[float], index: Optional[int], derived: Optional[Extreme]) -> RowEnd:
    """One end of the row: its own value and cell, each completed from ``derived`` where the row leaves it out."""
    return RowEnd(
        value if value is not None or derived is None else derived.value,
        index if index is not None or derived is None else derived.cell,
    )


def stored_energy_wh(remaining_ah: Optional[float], cell_count: Optional[int]) -> Optional[float]:
    """Energy stored now, in Wh: remaining Ah (SoC x capacity) at the pack's nominal voltage.

    The nominal voltage (cells x 3.2 V) rather than the measured one keeps the
    figure from jumping with the charge current, and matches the rated kWh
    printed on the battery (US3000C: 74 Ah x 48 V = 3552 Wh).
    """
    if remaining_ah is None or not cell_count:
        return None
    return round(remaining_ah * cell_count * NOMINAL_CELL_VOLTAGE, 1)


def _time_to_empty(remaining: Optional[float], current: Optional[float]) -> Optional[float]:
    """Seconds until empty at the present discharge current; None when not discharging."""
    if remaining is None or current is None or current > -MIN_CURRENT_FOR_TIME:
        return None
    return float(round(remaining / -current * 3600.0))


def _time_to_full(remaining: Optional[float], capacity: Optional[float], current: Optional[float]) -> Optional[float]:
    """Seconds until full at the present charge current (an estimate: the current falls near full)."""
    if remaining is None or capacity is None or current is None or current < MIN_CURRENT_FOR_TIME:
        return None
    return float(round(max(capacity - remaining, 0.0) / current * 3600.0))


def _consumed(remaining: Optional[float], capacity: Optional[float]) -> Optional[float]:
    """Ah taken out of a full battery (Victron's ConsumedAmphours)."""
    if capacity is None or remaining is None:
        return None
    return round(max(capacity - remaining, 0.0), 2)


def summarize_unit(battery: Battery, configured_cells: Optional[int] = None) -> UnitSummary:
    """One present unit's figures; ``configured_cells``: ``battery.num_cells`` (None for auto)."""
    row = battery.row
    cells: Sequence[CellRow] = battery.cells.cells if battery.cells is not None else ()
    table = table_extremes(battery.address, battery.cells)
    voltage = row.voltage if row else None
    current = row.current if row else None
    soc = row.soc if row else None
    capacity = battery.total_capacity
    power = round(voltage * current, 1) if voltage is not None and current is not None else None
    remaining = round(capacity * soc / 100.0, 2) if capacity is not None and soc is not None else None

    if row is not None and row.cell_voltage_low is not None:
        v_min = _cell_extreme(battery.address, row.cell_voltage_low, row.cell_voltage_low_id, cells, "voltage")
        v_max = _cell_extreme(battery.address, row.cell_voltage_high, row.cell_voltage_high_id, cells, "voltage")
    else:
        v_min, v_max = table.voltage_min, table.voltage_max
    if row is not None and row.cell_temp_low is not None:
        t_min = _cell_extreme(battery.address, row.cell_temp_low, row.cell_temp_low_id, cells, "temperature")
        t_max = _cell_extreme(battery.address, row.cell_temp_high, row.cell_temp_high_id, cells, "temperature")
    else:
        t_min, t_max = table.temp_min, table.temp_max

    def end(name: str, derived: Optional[Extreme]) -> RowEnd:
        if row is None:
            return _row_end(None, None, derived)
        return _row_end(getattr(row, name), getattr(row, name + "_id"), derived)

    volts = [c.voltage for c in cells]
    known_volts = _known(volts)
    balancing_flags = [c.balancing for c in cells if c.balancing is not None]
    cell_count = battery.cell_count
    return UnitSummary(
        address=battery.address,
        voltage=voltage,
        current=current,
        power=power,
        soc=soc,
        temperature=row.temperature if row else None,
        capacity=capacity,
        remaining=remaining,
        cell_voltage_min=v_min,
        cell_voltage_max=v_max,
        cell_temp_min=t_min,
        cell_temp_max=t_max,
        mos_temperature=row.mos_temperature if row else None,
        cell_voltages=tuple(volts),
        cell_balancing=tuple(c.balancing for c in cells) if balancing_flags else (),
        balancing=any(balancing_flags) if balancing_flags else None,
        cycle_count=battery.stats.cycle_count if battery.stats else None,
        soh=battery.stats.soh if battery.stats else None,
        consumed=_consumed(remaining, capacity),
        time_to_empty=_time_to_empty(remaining, current),
        time_to_full=_time_to_full(remaining, capacity, current),
        cell_count=cell_count,
        stored_energy=stored_energy_wh(remaining, cell_count or configured_cells or ASSUMED_CELLS),
        cell_voltage_sum=round(sum(known_volts), 3) if volts and len(known_volts) == len(volts) else None,
        cell_voltage_average=round(sum(known_volts) / len(known_volts), 4) if known_volts else None,
        cells_balancing=sum(1 for f in balancing_flags if f) if balancing_flags else None,
        cell_table=table,
        row_ends=RowEnds(
            cell_voltage_low=end("cell_voltage_low", v_min),
            cell_voltage_high=end("cell_voltage_high", v_max),
            cell_temp_low=end("cell_temp_low", t_min),
            cell_temp_high=end("cell_temp_high", t_max),
        ),
    )


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _known(values: Iterable[Optional[float]]) -> List[float]:
    return [v for v in values if v is not None]


def weighted_soc(units: Sequence[UnitSummary]) -> Optional[float]:
    """Bank SoC: remaining over installed capacity when every unit's capacity is known, else the plain mean.

    With mixed modules (a US2000 beside a US5000) the plain mean is wrong, so
    capacity weighting is the rule; the mean is only a fallback until the
    capacities have been read.
    """
    socs = [u.soc for u in units]
    if not units or any(s is None for s in socs):
        return None
    caps = [u.capacity for u in units]
    if all(c is not None and c > 0 for c in caps):
        total = sum(c for c in caps if c is not None)
        return round(sum(s * c for s, c in zip(socs, caps) if s is not None and c is not None) / total, 1)
    return round(sum(s for s in socs if s is not None) / len(socs), 1)


def _sum_of_all(values: Sequence[Optional[float]], digits: int) -> Optional[float]:
    """The sum, rounded, when there is a unit and each one's part is known; else None."""
    if not values or None in values:
        return None
    return round(sum(v for v in values if v is not None), digits)


def summarize_bank(bank: Bank, configured_cells: Optional[int] = None) -> BankSummary:
    """The poll's snapshot: every present unit and the bank as one battery.

    A bank figure is None when any unit's part of it is unknown.  ``configured_cells``:
    ``battery.num_cells`` (None for auto), the cell count until the console tells one.
    """
    units = tuple(summarize_unit(b, configured_cells) for b in bank.present())
    voltages = _known(u.voltage for u in units)
    cycles = [u.cycle_count for u in units]
    sohs = [u.soh for u in units]
    current = _sum_of_all([u.current for u in units], 3)
    capacity = _sum_of_all([u.capacity for u in units], 2)
    remaining = _sum_of_all([u.remaining for u in units], 2)
    stored = _sum_of_all([u.stored_energy for u in units], 1)
    counts = [u.cell_count for u in units if u.cell_count]
    return BankSummary(
        units=units,
        voltage=round(_mean(voltages), 3) if voltages and len(voltages) == len(units) else None,
        current=current,
        power=_sum_of_all([u.power for u in units], 1),
        soc=weighted_soc(units),
        temperature=_round(_mean(_known(u.temperature for u in units)), 2),
        capacity=capacity,
        remaining=remaining,
        cell_voltage_min=_pick((u.cell_voltage_min for u in units), highest=False),
        cell_voltage_max=_pick((u.cell_voltage_max for u in units), highest=True),
        cell_temp_min=_pick((u.cell_temp_min for u in units), highest=False),
        cell_temp_max=_pick((u.cell_temp_max for u in units), highest=True),
        mos_temperature=max(_known(u.mos_temperature for u in units), default=None),
        balancing=any(u.balancing for u in units) if any(u.balancing is not None for u in units) else None,
        # a bank figure from some of the units would be wrong, not merely less precise
        cycle_count=max(c for c in cycles if c is not None) if units and None not in cycles else None,
        soh=min(h for h in sohs if h is not None) if units and None not in sohs else None,
        consumed=_consumed(remaining, capacity),
        time_to_empty=_time_to_empty(remaining, current),
        time_to_full=_time_to_full(remaining, capacity, current),
        stored_energy=stored,
        units_offline=len(bank.missing),
        cells_per_battery=max(counts) if counts else configured_cells,
        cell_tables=tuple(table_extremes(a, b.cells) for a, b in sorted(bank.batteries.items())),
    )


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return round(value, digits) if value is not None else None
