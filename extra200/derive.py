"""Derived values: per-unit and whole-bank figures computed from the parsed records.

Pure functions over ``model`` records; no I/O, no clock.  Everything the
outputs show (Victron JSON, Home Assistant, files, database) and the charge
limits read comes from here, so it is computed once and the same everywhere.

Cell ids name the battery and the cell, 1-based like Victron's
``Voltages.Cell1``: ``B2C7`` is the seventh cell (console index 6) of unit 2.
"""

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from .model import Bank, Battery, CellRow


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

    @property
    def cell_voltage_delta(self) -> Optional[float]:
        if self.cell_voltage_min is None or self.cell_voltage_max is None:
            return None
        return round(self.cell_voltage_max.value - self.cell_voltage_min.value, 3)


@dataclass(frozen=True)
class BankSummary:
    """The bank as one battery: what the Victron bank topic and the charge limits use."""

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

    @property
    def units_online(self) -> int:
        return len(self.units)

    @property
    def cell_voltage_delta(self) -> Optional[float]:
        if self.cell_voltage_min is None or self.cell_voltage_max is None:
            return None
        return round(self.cell_voltage_max.value - self.cell_voltage_min.value, 3)


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


def _cells_extreme(address: int, cells: Sequence[CellRow], attr: str, highest: bool) -> Optional[Extreme]:
    known = [(getattr(c, attr), c.index) for c in cells if getattr(c, attr) is not None]
    if not known:
        return None
    value, index = (max if highest else min)(known, key=lambda pair: pair[0])
    return Extreme(value, address, index)


def summarize_unit(battery: Battery) -> UnitSummary:
    row = battery.row
    cells: Sequence[CellRow] = battery.cells.cells if battery.cells is not None else ()
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
        v_min = _cells_extreme(battery.address, cells, "voltage", highest=False)
        v_max = _cells_extreme(battery.address, cells, "voltage", highest=True)
    if row is not None and row.cell_temp_low is not None:
        t_min = _cell_extreme(battery.address, row.cell_temp_low, row.cell_temp_low_id, cells, "temperature")
        t_max = _cell_extreme(battery.address, row.cell_temp_high, row.cell_temp_high_id, cells, "temperature")
    else:
        t_min = _cells_extreme(battery.address, cells, "temperature", highest=False)
        t_max = _cells_extreme(battery.address, cells, "temperature", highest=True)

    balancing_flags = [c.balancing for c in cells if c.balancing is not None]
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
        cell_voltages=tuple(c.voltage for c in cells),
        cell_balancing=tuple(c.balancing for c in cells) if balancing_flags else (),
        balancing=any(balancing_flags) if balancing_flags else None,
        cycle_count=battery.stats.cycle_count if battery.stats else None,
        soh=battery.stats.soh if battery.stats else None,
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


def summarize_bank(bank: Bank) -> BankSummary:
    """Aggregate every present unit.  A figure is None when any unit's part of it is unknown."""
    units = tuple(summarize_unit(b) for b in bank.present())
    voltages = _known(u.voltage for u in units)
    currents = [u.current for u in units]
    powers = [u.power for u in units]
    caps = [u.capacity for u in units]
    remaining = [u.remaining for u in units]
    cycles = [u.cycle_count for u in units]
    sohs = [u.soh for u in units]
    return BankSummary(
        units=units,
        voltage=round(_mean(voltages), 3) if voltages and len(voltages) == len(units) else None,
        current=round(sum(c for c in currents if c is not None), 3) if units and None not in currents else None,
        power=round(sum(p for p in powers if p is not None), 1) if units and None not in powers else None,
        soc=weighted_soc(units),
        temperature=_round(_mean(_known(u.temperature for u in units)), 2),
        capacity=round(sum(c for c in caps if c is not None), 2) if units and None not in caps else None,
        remaining=round(sum(r for r in remaining if r is not None), 2) if units and None not in remaining else None,
        cell_voltage_min=_pick((u.cell_voltage_min for u in units), highest=False),
        cell_voltage_max=_pick((u.cell_voltage_max for u in units), highest=True),
        cell_temp_min=_pick((u.cell_temp_min for u in units), highest=False),
        cell_temp_max=_pick((u.cell_temp_max for u in units), highest=True),
        mos_temperature=max(_known(u.mos_temperature for u in units), default=None),
        balancing=any(u.balancing for u in units) if any(u.balancing is not None for u in units) else None,
        # a bank figure from some of the units would be wrong, not merely less precise
        cycle_count=max(c for c in cycles if c is not None) if units and None not in cycles else None,
        soh=min(h for h in sohs if h is not None) if units and None not in sohs else None,
    )


MIN_CURRENT_FOR_TIME = 0.5  # A: below this the bank counts as resting (no time to empty / full)


def time_to_empty(figures: Union[UnitSummary, BankSummary]) -> Optional[float]:
    """Seconds until empty at the present discharge current; None when not discharging."""
    if figures.remaining is None or figures.current is None or figures.current > -MIN_CURRENT_FOR_TIME:
        return None
    return float(round(figures.remaining / -figures.current * 3600.0))


def time_to_full(figures: Union[UnitSummary, BankSummary]) -> Optional[float]:
    """Seconds until full at the present charge current (an estimate: the current falls near full)."""
    if figures.remaining is None or figures.capacity is None or figures.current is None:
        return None
    if figures.current < MIN_CURRENT_FOR_TIME:
        return None
    return float(round(max(figures.capacity - figures.remaining, 0.0) / figures.current * 3600.0))


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return round(value, digits) if value is not None else None
