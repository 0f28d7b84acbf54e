"""The poll's snapshot (``derive.summarize_bank``): every derived figure, worked out by hand here,
and the outputs reading it instead of computing their own.

The bank, by hand:

* unit 1: 50.0 V, -10 A, SoC 50 % of 100 Ah (pwr N), 15 cells; its row prints the lowest cell
  3.30 V without its id (cell 2 of the table holds it) and the highest 3.40 V at cell 5; cell 4
  balances;
* unit 2: 50.2 V, -5 A, SoC 80 % of 50 Ah, 16 cells (cell 6 unread); its row prints the highest
  cell only (3.45 V, cell 3) and no temperatures; its table (older than the row) says 3.20 V at
  cell 8 and 3.42 V at cell 1;
* unit 3: configured, absent this poll, a cell table from before.
"""

import copy
import dataclasses

import pytest

from extra200.database import battery_values
from extra200.derive import CellExtremes, Extreme, stored_energy_wh, summarize_bank
from extra200.homeassistant.entities import BANK_ENTITIES, state_values
from extra200.homeassistant.values import BankView
from extra200.model import Bank, Battery, CellRow, CellTable, PowerDetail, PowerRow
from extra200.stats import cell_statistics
from extra200.victron import bank_payload, unit_payload
from test_victron import FixedLimits

UNIT1_VOLTS = [3.35, 3.30, 3.33, 3.38, 3.40] + [3.35] * 10
UNIT1_TEMPS = [20.0, 22.0, 22.0, 24.0] + [22.0] * 11
UNIT2_VOLTS = [3.42, 3.30, 3.30, 3.30, 3.30, None, 3.30, 3.20] + [3.30] * 8
UNIT2_TEMPS = [21.0] * 9 + [19.5, 25.5] + [21.0] * 5


def _table(address, volts, temps, balancing=None):
    return CellTable(
        address,
        tuple(
            CellRow(i, voltage=v, temperature=t, balancing=balancing[i] if balancing else None)
            for i, (v, t) in enumerate(zip(volts, temps))
        ),
    )


def _bank() -> Bank:
    one = Battery(1)
    one.row = PowerRow(
        address=1,
        present=True,
        voltage=50.0,
        current=-10.0,
        soc=50.0,
        cell_voltage_low=3.30,
        cell_voltage_high=3.40,
        cell_voltage_high_id=4,
        cell_temp_low=20.0,
        cell_temp_low_id=0,
        cell_temp_high=24.0,
    )
    one.detail = PowerDetail(1, total_capacity=100.0)
    one.cells = _table(1, UNIT1_VOLTS, UNIT1_TEMPS, [i == 3 for i in range(15)])
    two = Battery(2)
    two.row = PowerRow(
        address=2, present=True, voltage=50.2, current=-5.0, soc=80.0, cell_voltage_high=3.45, cell_voltage_high_id=2
    )
    two.detail = PowerDetail(2, total_capacity=50.0)
    two.cells = _table(2, UNIT2_VOLTS, UNIT2_TEMPS)
    three = Battery(3)
    three.cells = _table(3, [3.31, 3.29], [18.0, 18.5])
    return Bank(batteries={1: one, 2: two, 3: three}, expected=(1, 2, 3), missing=(3,), poll_time=1.7e9)


def test_unit_figures_worked_by_hand():
    one, two = summarize_bank(_bank()).units
    assert (one.power, one.remaining, one.consumed) == (-500.0, 50.0, 50.0)
    assert (one.time_to_empty, one.time_to_full) == (18000.0, None)  # 50 Ah at 10 A: 5 h
    assert (one.cell_count, one.stored_energy) == (15, 2400.0)  # 50 Ah x 15 x 3.2 V
    assert (one.cell_voltage_sum, one.cell_voltage_average) == (50.26, 3.3507)  # 50.26 V / 15
    assert (one.cells_balancing, one.balancing) == (1, True)
    # the row's extremes, the lowest located in the table (cell 2) as the row gives no id
    assert (one.cell_voltage_min, one.cell_voltage_max) == (Extreme(3.30, 1, 1), Extreme(3.40, 1, 4))
    assert (one.cell_temp_min, one.cell_temp_max) == (Extreme(20.0, 1, 0), Extreme(24.0, 1, 3))
    assert one.cell_voltage_delta == 0.1

    assert (two.power, two.remaining, two.consumed, two.time_to_empty) == (-251.0, 40.0, 10.0, 28800.0)
    assert (two.cell_count, two.stored_energy) == (16, 2048.0)  # 40 Ah x 16 x 3.2 V
    assert two.cell_voltage_sum is None  # cell 6 unread
    assert two.cell_voltage_average == 3.3013  # 49.52 V over the 15 cells read
    assert (two.cells_balancing, two.balancing) == (None, None)  # no BAL column
    # the row prints one end only: both extremes come from the table
    assert (two.cell_voltage_min.id, two.cell_voltage_max.id) == ("B2C8", "B2C1")
    assert (two.cell_temp_min, two.cell_temp_max) == (Extreme(19.5, 2, 9), Extreme(25.5, 2, 10))


def test_the_rows_own_ends_differ_from_the_extremes_where_the_row_prints_one_end():
    """The database keeps each end the row prints (3.45 V at cell 3), not the table's 3.42 V at cell 1."""
    one, two = summarize_bank(_bank()).units
    ends = two.row_ends
    assert (ends.cell_voltage_low.value, ends.cell_voltage_low.cell) == (3.20, 7)  # from the table
    assert (ends.cell_voltage_high.value, ends.cell_voltage_high.cell) == (3.45, 2)  # the row's own
    assert two.cell_voltage_max.value == 3.42
    assert (ends.cell_temp_high.value, ends.cell_temp_high.cell) == (25.5, 10)
    # both ends printed: the same as the extremes, ids completed from the table
    assert (one.row_ends.cell_voltage_low.value, one.row_ends.cell_voltage_low.cell) == (3.30, 1)
    assert (one.row_ends.cell_temp_high.value, one.row_ends.cell_temp_high.cell) == (24.0, 3)


def test_bank_figures_worked_by_hand():
    summary = summarize_bank(_bank())
    assert (summary.voltage, summary.current, summary.power) == (50.1, -15.0, -751.0)
    assert (summary.capacity, summary.remaining, summary.soc, summary.consumed) == (150.0, 90.0, 60.0, 60.0)
    assert (summary.time_to_empty, summary.time_to_full) == (21600.0, None)  # 90 Ah at 15 A: 6 h
    assert summary.stored_energy == 4448.0
    assert (summary.units_online, summary.units_offline, summary.cells_per_battery) == (2, 1, 16)
    assert (summary.cell_voltage_min.id, summary.cell_voltage_max.id, summary.cell_voltage_delta) == ("B2C8", "B2C1", 0.22)
    assert (summary.cell_temp_min.id, summary.cell_temp_max.id) == ("B2C10", "B2C11")
    assert summary.publishable


def test_cell_tables_cover_every_unit_of_the_bank_absent_ones_too():
    summary = summarize_bank(_bank())
    assert [t.address for t in summary.cell_tables] == [1, 2, 3]
    absent = summary.cell_table(3)
    assert (absent.voltage_min, absent.voltage_max, absent.voltage_delta) == (Extreme(3.29, 3, 1), Extreme(3.31, 3, 0), 0.02)
    assert (absent.temp_delta, summary.cell_table(2).voltage_max) == (0.5, Extreme(3.42, 2, 0))
    assert summary.cell_table(9) == CellExtremes(9, None, None, None, None)


def test_time_to_full_while_charging_and_nothing_while_resting():
    battery = Battery(1)
    battery.row = PowerRow(address=1, present=True, voltage=52.0, current=20.0, soc=75.0)
    battery.detail = PowerDetail(1, total_capacity=100.0)
    bank = Bank(batteries={1: battery})
    charging = summarize_bank(bank)
    assert (charging.time_to_full, charging.time_to_empty) == (4500.0, None)  # 25 Ah at 20 A: 1.25 h
    battery.row = dataclasses.replace(battery.row, current=0.3)  # below 0.5 A: resting
    resting = summarize_bank(bank)
    assert (resting.time_to_full, resting.time_to_empty) == (None, None)


def test_cell_count_until_the_console_tells():
    battery = Battery(1)
    battery.row = PowerRow(address=1, present=True, voltage=52.0, current=0.0, soc=50.0)
    battery.detail = PowerDetail(1, total_capacity=100.0)
    bank = Bank(batteries={1: battery})
    assert (summarize_bank(bank).stored_energy, summarize_bank(bank).cells_per_battery) == (2400.0, None)  # 15 assumed
    assert (summarize_bank(bank, 16).stored_energy, summarize_bank(bank, 16).cells_per_battery) == (2560.0, 16)


def test_stored_energy_uses_the_nominal_voltage():
    assert stored_energy_wh(37.0, 15) == 1776.0  # half a US3000C: 74 Ah x 48 V / 2
    assert stored_energy_wh(100.0, 16) == 5120.0
    assert stored_energy_wh(None, 15) is None and stored_energy_wh(10.0, None) is None


def test_the_snapshot_is_frozen_and_the_records_are_left_as_read():
    bank = _bank()
    before = copy.deepcopy(bank)
    summary = summarize_bank(bank)
    assert bank == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.time_to_empty = 1.0  # type: ignore[misc]


def test_outputs_read_the_snapshot_instead_of_computing():
    """A figure changed in the snapshot is what the outputs show: none computes it again."""
    summary = summarize_bank(_bank())
    one, two = summary.units
    one = dataclasses.replace(one, time_to_empty=1234.0, consumed=7.0, cell_voltage_sum=49.0)
    edited = dataclasses.replace(summary, units=(one, two), time_to_empty=4321.0, consumed=8.0)
    bank = bank_payload(edited, FixedLimits(), 15, 1)
    unit = unit_payload(one, FixedLimits())
    assert (bank["TimeToGo"], bank["ConsumedAmphours"]) == (4321.0, 8.0)
    assert (unit["TimeToGo"], unit["ConsumedAmphours"], unit["Voltages"]["Sum"]) == (1234.0, 7.0, 49.0)
    shown = state_values(
        BANK_ENTITIES, BankView(dataclasses.replace(edited, stored_energy=5000.0, time_to_full=7200.0), None, None)
    )
    assert (shown["time_to_empty"], shown["time_to_full"], shown["stored_energy"]) == (1.2, 2.0, 5.0)  # h, h, kWh

    table = CellExtremes(2, Extreme(3.0, 2, 4), Extreme(3.5, 2, 5), None, None)
    statistics = cell_statistics(table)
    assert (statistics["voltage_min_cell"], statistics["voltage_delta"], statistics["temperature_min"]) == ("B2C5", 0.5, None)

    ends = dataclasses.replace(two.row_ends, cell_voltage_high=dataclasses.replace(two.row_ends.cell_voltage_high, cell=11))
    row = battery_values(_bank().batteries[2], dataclasses.replace(two, row_ends=ends), 1.7e9)
    assert (row["cell_voltage_high"], row["cell_voltage_high_cell"], row["cell_voltage_low"]) == (3.45, 12, 3.20)
