"""One poll as rows: the bank, its summary and the poll's events turned into each table's rows (pure).

One row per unit in ``battery_readings`` (every ``pwr`` column, the ``pwr N``
detail and the derived figures), one row per cell in ``cell_readings`` when a
fresh ``bat N`` was read (columns by ``cells.level``), and one row per event
change in ``battery_events``.  Times are the poll's time (stored as UTC by
the writer).  ``poll_entry`` puts a poll's rows together as one spool entry.
"""

import json
import math
from typing import Any, Collection, Dict, List, Optional, Sequence

from ..derive import BankSummary, UnitSummary
from ..model import Bank, Battery
from ..stats import cell_fields
from .schema import BATTERY_EVENTS, BATTERY_READINGS, CELL_READINGS, Table

SPOOL_FORMAT = 1  # the "v" of a spool entry


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plus_one(index: Optional[int]) -> Optional[int]:
    return index + 1 if index is not None else None


def _clip(table: Table, values: Dict[str, Any]) -> List[Any]:
    """The row in the table's column order, text cut to the column's length."""
    row: List[Any] = []
    for column in table.columns:
        value = _number(values.get(column.name))
        limit = column.max_length
        if limit is not None and isinstance(value, str) and len(value) > limit:
            value = value[:limit]
        row.append(value)
    return row


def battery_values(battery: Battery, unit: Optional[UnitSummary], ts: float) -> Dict[str, Any]:
    """One ``battery_readings`` row as a dict (column -> value)."""
    row = battery.row
    detail = battery.detail
    values: Dict[str, Any] = {"ts": ts, "address": battery.address, "present": row.present if row else None}
    if row is not None:
        for name in (
            "voltage",
            "current",
            "soc",
            "temperature",
            "cell_temp_low",
            "cell_temp_high",
            "cell_voltage_low",
            "cell_voltage_high",
            "base_state",
            "voltage_state",
            "current_state",
            "temperature_state",
            "battery_voltage_state",
            "battery_temperature_state",
            "mos_temperature",
            "mos_temperature_state",
            "system_alarm_state",
            "barcode",
            "device_type",
        ):
            values[name] = getattr(row, name)
        values["unit_time"] = row.time
        for name in ("cell_temp_low", "cell_temp_high", "cell_voltage_low", "cell_voltage_high"):
            values[name + "_cell"] = _plus_one(getattr(row, name + "_id"))
    if detail is not None:
        for name in (
            "total_capacity",
            "remaining_capacity",
            "max_voltage",
            "charge_times",
            "coulomb_state",
            "soh_state",
            "heater_state",
            "bat_events",
            "power_events",
            "system_fault",
        ):
            values[name] = getattr(detail, name)
        values["protect_enabled"] = " ".join(detail.protect_enabled) if detail.protect_enabled else None
    if unit is not None:
        for name in ("power", "capacity", "remaining", "balancing", "cycle_count", "soh", "cell_voltage_delta"):
            values[name] = getattr(unit, name)
        # Each end as the pwr row prints it, completed from the unit's extreme where the row leaves it out
        # (``derive.RowEnds``: not always the unit's extremes, see there).
        for name in ("cell_temp_low", "cell_temp_high", "cell_voltage_low", "cell_voltage_high"):
            end = getattr(unit.row_ends, name)
            values[name] = end.value
            values[name + "_cell"] = _plus_one(end.cell)
    if battery.barcode:
        values["barcode"] = battery.barcode
    return values


def cell_rows(battery: Battery, ts: float, level: str) -> List[Dict[str, Any]]:
    """The ``cell_readings`` rows of a unit's last ``bat N``: the level's columns, the others NULL."""
    if battery.cells is None or level == "off":
        return []
    fields = cell_fields(level)
    rows = []
    for cell in battery.cells.cells:
        values: Dict[str, Any] = {"ts": ts, "address": battery.address, "cell": cell.index + 1}
        for name in fields:
            values[name] = getattr(cell, name)
        if level == "high" and cell.extra:
            values["extra"] = json.dumps(cell.extra, sort_keys=True)
        rows.append(values)
    return rows


def event_values(change: Any) -> Dict[str, Any]:
    """A ``battery_events`` row from an ``events.EventChange``."""
    event = change.event
    return {
        "ts": change.time,
        "address": change.address,
        "kind": event.kind,
        "code": event.code,
        "cell": event.cell or 0,
        "name": event.name,
        "level": event.level,
        "transition": change.change,
    }


def _table_entry(table: Table, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"columns": [c.name for c in table.columns], "rows": [_clip(table, r) for r in rows]}


def recorded_units(bank: Bank) -> List[Battery]:
    """The units with a ``pwr`` row this poll (absent slots too: their row says so), by address."""
    return [b for _, b in sorted(bank.batteries.items()) if b.row is not None]


def poll_entry(
    bank: Bank,
    summary: BankSummary,
    poll_time: float,
    cells_level: str,
    fresh_cells: Collection[int] = (),
    events: Sequence[Any] = (),
) -> Dict[str, Any]:
    """One poll as a spool entry: each table's columns and rows, by table name.

    Cell rows only for the units in ``fresh_cells`` (a ``bat N`` not recorded
    yet); event rows for ``events`` (``events.EventChange``).
    """
    units = {u.address: u for u in summary.units}
    batteries = recorded_units(bank)
    tables: Dict[str, Any] = {
        BATTERY_READINGS.name: _table_entry(
            BATTERY_READINGS, [battery_values(b, units.get(b.address), poll_time) for b in batteries]
        )
    }
    cells: List[Dict[str, Any]] = []
    for battery in batteries:
        if battery.address in fresh_cells:
            cells.extend(cell_rows(battery, poll_time, cells_level))
    if cells:
        tables[CELL_READINGS.name] = _table_entry(CELL_READINGS, cells)
    if events:
        tables[BATTERY_EVENTS.name] = _table_entry(BATTERY_EVENTS, [event_values(c) for c in events])
    return {"v": SPOOL_FORMAT, "ts": poll_time, "tables": tables}
