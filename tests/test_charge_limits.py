"""Charge control (extra200/charge): the rules poll by poll, six scenarios, and properties over random banks.

Banks are built by hand from the model records, the way the parser fills
them; ``summarize_bank`` (derive.py) makes the summary as in the daemon.
Times are the controller's monotonic clock, in seconds.
"""

import dataclasses
import json
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extra200.charge import ALARM_NAMES, CELL_TABLE_MAX_AGE, ChargeController, ChargeLimits, Curve
from extra200.config import BatteryConfig, ChargeConfig, ConfigError, parse_config
from extra200.derive import summarize_bank
from extra200.model import Bank, Battery, CellRow, CellTable, DeviceInfo, PowerDetail, PowerRow

DT = 5.0  # s between polls in the scenarios


# -- building banks ---------------------------------------------------------


def cells_of(voltage: float, count: int = 15, high: Optional[float] = None, low: Optional[float] = None) -> List[float]:
    """``count`` cells at ``voltage``, the last one at ``high`` and the first at ``low`` when given."""
    cells = [voltage] * count
    if high is not None:
        cells[-1] = high
    if low is not None:
        cells[0] = low
    return cells


def unit(
    address: int,
    cells: Sequence[float],
    temp: float = 20.0,
    soc: Optional[float] = 50.0,
    current: float = 0.0,
    table_time: Optional[float] = None,
    info: Optional[DeviceInfo] = None,
    detail: Optional[PowerDetail] = None,
    **row: object,
) -> Battery:
    """A present unit: its ``pwr`` row from the cells (ids included), optionally its ``bat N`` table."""
    hi, lo = max(cells), min(cells)
    power_row = PowerRow(
        address,
        True,
        voltage=round(sum(cells), 3),
        current=current,
        temperature=temp + 2.0,
        cell_temp_low=temp,
        cell_temp_high=temp + 0.5,
        cell_voltage_low=lo,
        cell_voltage_high=hi,
        cell_voltage_low_id=list(cells).index(lo),
        cell_voltage_high_id=list(cells).index(hi),
        base_state="Charge" if current > 0 else "Dischg" if current < 0 else "Idle",
        voltage_state="Normal",
        current_state="Normal",
        temperature_state="Normal",
        soc=soc,
        battery_voltage_state="Normal",
        battery_temperature_state="Normal",
    )
    power_row = dataclasses.replace(power_row, **row)
    table = None
    if table_time is not None:
        table = CellTable(
            address,
            tuple(
                CellRow(i, voltage=v, temperature=temp, voltage_state="Normal", temperature_state="Normal")
                for i, v in enumerate(cells)
            ),
        )
    # The console tells each unit's cell count (info N Cell Number), as on the daemon's first poll.
    info = dataclasses.replace(info or DeviceInfo(), cell_count=(info.cell_count if info else None) or len(cells))
    return Battery(address, row=power_row, cells=table, cells_time=table_time, info=info, detail=detail, row_time=0.0)


def absent(address: int) -> Battery:
    return Battery(address, row=PowerRow(address, False))


def bank(*batteries: Battery, expected: Optional[Tuple[int, ...]] = None) -> Bank:
    gone = tuple(b.address for b in batteries if not b.present)
    return Bank(
        batteries={b.address: b for b in batteries},
        expected=expected if expected is not None else tuple(b.address for b in batteries),
        missing=gone,
        complete=not gone,
    )


def controller(charge: Optional[ChargeConfig] = None, **battery: object) -> ChargeController:
    return ChargeController(charge or ChargeConfig(), BatteryConfig(**battery))  # type: ignore[arg-type]


def poll(ctl: ChargeController, the_bank: Bank, now: float, fresh: bool = True) -> ChargeLimits:
    limits = ctl.update(the_bank, summarize_bank(the_bank), now, fresh)
    assert limits.allow_charge == (limits.charge_current > 0)
    assert limits.allow_discharge == (limits.discharge_current > 0)
    assert sorted(limits.alarms) == sorted(ALARM_NAMES)
    return limits


def pair(cells: Sequence[float], **kw: object) -> Bank:
    """The usual two-unit bank, both units alike."""
    return bank(unit(1, cells, **kw), unit(2, cells, **kw))  # type: ignore[arg-type]


def raised(limits: ChargeLimits) -> Dict[str, int]:
    return {name: level for name, level in limits.alarms.items() if level}


# -- curves and settings ---------------------------------------------------


def test_curve_interpolates_and_is_flat_beyond_the_ends() -> None:
    curve = Curve("3.40:100, 3.45:25, 3.50:5, 3.55:0")
    assert curve(3.0) == 1.0
    assert curve(3.40) == 1.0
    assert curve(3.47) == pytest.approx(0.17)
    assert curve(3.55) == 0.0
    assert curve(4.0) == 0.0


def test_default_curves_and_settings_load_from_yaml() -> None:
    text = """
charge:
  bulk_cell_voltage: 3.40
  discharge_temperature_curve: -10:0, -5:20, 0:50, 5:100
  charge_soc_curve: "90:100, 98:10"
"""
    config = parse_config(yaml.safe_load(text))
    assert config.charge.bulk_cell_voltage == 3.40
    assert ChargeConfig.parse_curve(config.charge.discharge_temperature_curve) == (
        (-10.0, 0.0),
        (-5.0, 20.0),
        (0.0, 50.0),
        (5.0, 100.0),
    )
    for f in dataclasses.fields(ChargeConfig):
        if f.name.endswith("_curve"):
            ChargeConfig.parse_curve(f.default)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("charge_cell_voltage_curve", "3.40:100", "needs at least two points"),
        ("charge_cell_voltage_curve", "3.50:100, 3.40:0", "values must rise"),
        ("charge_cell_voltage_curve", "3.40:100, 3.50:120", "percent must be 0 to 100"),
        ("charge_temperature_curve", "cold:0, warm:100", "is not a point"),
        ("bulk_cell_voltage", 3.70, "must be between 3.3 and 3.6"),
        ("max_cell_voltage", 3.70, "must be between 3.4 and 3.65"),
        ("discharge_cutoff_cell_voltage", 2.0, "must be between 2.5 and 3.2"),
        # finding 9: no reading may earn more current by getting worse
        ("charge_cell_voltage_curve", "3.40:100, 3.45:25, 3.50:60, 3.55:0", "percent must fall or stay"),
        ("discharge_cell_voltage_curve", "2.90:0, 3.00:50, 3.10:20, 3.15:100", "percent must rise or stay"),
        ("charge_temperature_curve", "0:0, 5:100, 10:20, 40:100, 45:20", "rise, then fall"),
        ("electronics_temperature_curve", "70:100, 80:25, 90:50", "percent must fall or stay"),
        ("discharge_soc_curve", "5:10, 10:20, 15:5, 20:100", "percent must rise or stay"),
    ],
)
def test_bad_charge_settings_are_reported_by_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"charge": {key: value}})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("charge.%s: " % key)
    assert message in caught.value.problems[0]


# -- single rules ------------------------------------------------------------


def test_defaults_for_a_healthy_15_cell_bank() -> None:
    limits = poll(controller(), pair(cells_of(3.30)), 0.0)
    assert (limits.charge_voltage, limits.charge_current, limits.discharge_current) == (51.75, 50.0, 50.0)
    assert limits.mode == "Bulk"
    assert limits.voltage_reason == "bulk 3.450 V x 15 cells"
    assert limits.charge_reason == "max 25.0 A x 2 units"
    assert limits.battery_low_voltage == 43.5
    assert raised(limits) == {}
    assert (
        limits.diagnostic
        == "Bulk | CVL 51.75 V: bulk 3.450 V x 15 cells | CCL 50.0 A: max 25.0 A x 2 units | DCL 50.0 A: max 25.0 A x 2 units"
    )


def test_16_cells_by_default_and_a_configured_maximum_still_caps() -> None:
    auto = poll(controller(), pair(cells_of(3.30, 16)), 0.0)
    assert auto.charge_voltage == 55.2 and auto.voltage_reason == "bulk 3.450 V x 16 cells"
    assert auto.battery_low_voltage == 46.4
    assert raised(auto) == {}  # a 16-cell pack at 52.8 V is no high voltage
    capped = poll(controller(num_cells=16, max_charge_voltage=52.5), pair(cells_of(3.30, 16)), 0.0)
    assert capped.charge_voltage == 52.5
    assert capped.voltage_reason == "battery.max_charge_voltage 52.50 V"


def test_the_16_cell_auto_ceiling_is_56_v() -> None:
    charge = ChargeConfig(bulk_cell_voltage=3.55, max_cell_voltage=3.60)
    limits = poll(controller(charge), pair(cells_of(3.30, 16)), 0.0)
    assert limits.charge_voltage == 56.0
    assert limits.voltage_reason == "16-cell pack ceiling 56.00 V"


def test_the_old_shipped_15_cell_config_on_a_16_cell_console_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """num_cells: 15 and max_charge_voltage: 52.5 (the old shipped file) on Pytes: the lower count wins, said once."""
    ctl = controller(num_cells=15, max_charge_voltage=52.5)
    for now in (0.0, 5.0):
        limits = poll(ctl, pair(cells_of(3.33, 16)), now)
    assert limits.charge_voltage == 51.75
    assert limits.battery_low_voltage == 46.4
    assert raised(limits) == {}  # 53.3 V is not high for 16 cells
    assert caplog.text.count("battery.num_cells is 15 but the console reports 16 cells") == 1


def test_a_mixed_bank_charges_to_the_15_cell_limit() -> None:
    mixed = bank(unit(1, cells_of(3.30)), unit(2, cells_of(3.30, 16)))
    limits = poll(controller(), mixed, 0.0)
    assert limits.charge_voltage == 51.75  # the lower wins: 15 x 3.45, under the 52.8 V ceiling
    assert limits.battery_low_voltage == 46.4
    assert limits.charge_current == 50.0


def test_no_charge_current_until_every_units_cell_count_is_known() -> None:
    ctl = controller(charge=ChargeConfig(stale_charge_grace=60.0))
    known_pair = pair(cells_of(3.30, 16))
    assert poll(ctl, known_pair, 0.0).charge_current == 50.0
    newcomer = unit(3, cells_of(3.30, 16))
    newcomer.info = None  # no bat N table, no info yet
    limits = poll(ctl, bank(*known_pair.present(), newcomer), 5.0)
    assert limits.charge_current == 0.0  # at once, whatever stale_charge_grace says
    assert "unit 3 cell count not known yet" in limits.charge_reason
    assert limits.charge_voltage <= 15 * 3.375 + 1e-9  # counted as 15 cells (the lower), at most float
    assert limits.discharge_current > 0.0


def test_15_cells_never_above_52_8_v_whatever_the_settings() -> None:
    charge = ChargeConfig(bulk_cell_voltage=3.60, max_cell_voltage=3.65)
    limits = poll(controller(charge, max_charge_voltage=58.4), pair(cells_of(3.30)), 0.0)
    assert limits.charge_voltage == 52.8
    assert limits.voltage_reason == "15-cell ceiling 52.80 V"


def test_a_unit_reporting_fewer_cells_than_configured_lowers_cvl(caplog: pytest.LogCaptureFixture) -> None:
    info = DeviceInfo(cell_count=15)
    ctl = controller(num_cells=16, max_charge_voltage=56.0)
    limits = poll(ctl, pair(cells_of(3.30), info=info), 0.0)
    assert limits.charge_voltage == 51.75  # 15 x 3.45: never the 16-cell value on a 15-cell pack
    assert limits.battery_low_voltage == 46.4  # the larger count: the safer low limit
    assert "battery.num_cells is 16 but the console reports 15 cells" in caplog.text


def test_bms_rating_from_info_scaled_by_units_online() -> None:
    info = DeviceInfo(cell_count=15, max_charge_current=10.0, max_discharge_current=90.0)
    limits = poll(controller(), pair(cells_of(3.30), info=info), 0.0)
    assert limits.charge_current == 20.0
    assert limits.charge_reason == "BMS rating 10.0 A x 2 units"
    assert limits.discharge_current == 50.0


def test_cell_voltage_curve_names_the_cell() -> None:
    limits = poll(controller(), bank(unit(1, cells_of(3.40)), unit(2, cells_of(3.40, high=3.47))), 0.0)
    assert limits.charge_current == 8.5  # 17 % of 50 A
    assert limits.charge_reason == "cell B2C15 3.470 V"


def test_a_cell_table_counts_when_read_with_the_row_or_when_the_row_lacks_the_cell() -> None:
    cells = cells_of(3.40, high=3.56)
    now = 10000.0
    this_poll = dataclasses.replace(
        unit(1, cells, table_time=now, cell_voltage_high=3.40, cell_voltage_high_id=None), row_time=now
    )
    limits = poll(controller(), bank(this_poll), now)
    assert limits.charge_current == 0.0
    assert limits.charge_reason == "cell B1C15 3.560 V at/above cut-off 3.550 V"
    # the row has no highest cell: a recent table stands in, an old one does not
    lacking = dict(cell_voltage_high=None, cell_voltage_high_id=None)
    recent = dataclasses.replace(unit(1, cells, table_time=now - 60, **lacking), row_time=now)  # type: ignore[arg-type]
    assert poll(controller(), bank(recent), now).charge_reason.startswith("no data: B1 reports no cell voltages")
    old = dataclasses.replace(unit(1, cells, table_time=now - CELL_TABLE_MAX_AGE - 1, cell_voltage_high=3.40), row_time=now)
    assert poll(controller(), bank(old), now).charge_current == 25.0


def test_a_fresh_row_beats_an_older_table_and_the_reason_cites_it() -> None:
    """Finding 9: limits recovered up to a minute after the row (and D-Bus) showed the cell back, citing the old value."""
    now = 10000.0
    ctl = controller()
    high = dataclasses.replace(unit(1, cells_of(3.40, high=3.56), table_time=now), row_time=now)
    assert poll(ctl, bank(high), now).charge_current == 0.0
    # next poll: the row shows the cell back at 3.40 V, the table (not read again) still says 3.56 V
    back = dataclasses.replace(high, row=dataclasses.replace(high.row, cell_voltage_high=3.40, voltage=51.0), row_time=now + DT)
    limits = poll(ctl, bank(back), now + DT)
    assert limits.charge_reason == "held 30 s after a reduction; rules allow CCL 25.0 A (max 25.0 A x 1 units)"
    assert raised(limits) == {}


def test_bms_state_words_stop_charge_or_discharge() -> None:
    high = poll(controller(), bank(unit(1, cells_of(3.40), battery_voltage_state="High"), unit(2, cells_of(3.40))), 0.0)
    assert (high.charge_current, high.discharge_current) == (0.0, 50.0)
    assert high.charge_reason == "BMS state B1 B.V.St High"
    assert high.alarms["HighCellVoltage"] == 1
    low = poll(controller(), bank(unit(1, cells_of(3.10), voltage_state="Low"), unit(2, cells_of(3.10))), 0.0)
    assert (low.charge_current, low.discharge_current) == (50.0, 0.0)
    assert low.discharge_reason == "BMS state B1 Volt.St Low"
    assert low.alarms["LowVoltage"] == 1
    ignored = poll(
        controller(ChargeConfig(bms_states_block=False)), bank(unit(1, cells_of(3.40), battery_voltage_state="High")), 0.0
    )
    assert ignored.charge_current == 25.0
    assert ignored.alarms["HighCellVoltage"] == 1


def test_charge_mosfet_off_removes_that_unit_from_the_charge_maximum() -> None:
    off = PowerDetail(1, extra={"CMOS Status": "OFF", "DMOS Status": "ON"})
    limits = poll(controller(), bank(unit(1, cells_of(3.30), detail=off), unit(2, cells_of(3.30))), 0.0)
    assert limits.charge_current == 25.0
    assert limits.charge_reason == "max 25.0 A x 1 units (unit 1 charge switched off by its BMS)"
    assert limits.discharge_current == 50.0


def test_events_and_faults_stop_charging_and_raise_alarms() -> None:
    detail = PowerDetail(1, power_events=0x1 | 0x100000, system_fault=0x20, soh_state="Abnormal")
    limits = poll(controller(), bank(unit(1, cells_of(3.30), detail=detail, current=5.0)), 0.0)
    assert (limits.charge_current, limits.discharge_current) == (0.0, 25.0)
    assert limits.charge_reason == "B1 Power Events 0x100001: over-voltage"
    assert raised(limits) == {
        "HighVoltage": 2,
        "HighChargeCurrent": 1,
        "HighCurrent": 1,
        "InternalFailure": 2,
        "StateOfHealth": 1,
    }


def test_electronics_temperature_derates_both_directions() -> None:
    limits = poll(controller(), bank(unit(1, cells_of(3.30), mos_temperature=75.0)), 0.0)
    assert (limits.charge_current, limits.discharge_current) == (15.6, 15.6)  # 62.5 % of 25 A
    assert limits.charge_reason == "MOSFET B1 75.0 °C"
    assert limits.alarms["HighInternalTemperature"] == 1


def test_soc_derating_is_off_by_default() -> None:
    full = bank(unit(1, cells_of(3.33), soc=97.0))
    assert poll(controller(), full, 0.0).charge_current == 25.0
    limits = poll(controller(ChargeConfig(soc_derating=True)), full, 0.0)
    assert limits.charge_current == 3.3  # 95 %: 20 %, 98 %: 10 % -> 13.3 % of 25 A
    assert limits.charge_reason == "SoC B1 97 %"


def test_imbalance_and_low_soc_alarms() -> None:
    limits = poll(controller(), bank(unit(1, cells_of(3.30, high=3.45), soc=7.0)), 0.0)
    assert limits.alarms["CellImbalance"] == 1
    assert limits.alarms["LowSoc"] == 1
    limits = poll(controller(), bank(unit(1, cells_of(3.30, high=3.52), soc=4.0)), 0.0)
    assert limits.alarms["CellImbalance"] == 2
    assert limits.alarms["LowSoc"] == 2


def test_a_unit_without_cell_voltages_stops_charging() -> None:
    ctl = controller()
    poll(ctl, pair(cells_of(3.30)), 0.0)
    blind = bank(unit(1, cells_of(3.30)), unit(2, cells_of(3.30), cell_voltage_high=None, cell_voltage_low=None))
    limits = poll(ctl, blind, DT)
    assert limits.charge_current == 0.0
    assert limits.charge_reason == "no data: B2 reports no cell voltages"
    assert limits.mode == "Safe (B2 reports no cell voltages)"
    assert limits.charge_voltage == 49.5  # charging stopped: at most the pack's voltage
    assert limits.voltage_reason == "charging stopped (no data: B2 reports no cell voltages): at most the pack's 49.50 V"
    assert limits.discharge_current == 50.0  # held: the last lowest cell was far from empty
    assert limits.discharge_reason.startswith("no data: B2 reports no cell voltages; held up to 600 s")


def test_stale_data_stops_charge_and_holds_discharge_for_the_grace_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="extra200.charge_limits")
    ctl = controller()
    good = pair(cells_of(3.30))
    poll(ctl, good, 0.0)
    limits = poll(ctl, good, DT, fresh=False)
    assert (limits.charge_voltage, limits.charge_current, limits.discharge_current) == (50.62, 0.0, 50.0)
    assert limits.mode == "Safe (no data)"
    assert limits.alarms["BmsCable"] == 2
    assert poll(ctl, good, DT + 595, fresh=False).discharge_current == 50.0
    limits = poll(ctl, good, DT + 600, fresh=False)
    assert limits.discharge_current == 0.0
    assert limits.discharge_reason == "no data: no fresh data"
    assert "Charge control Safe (no data): no limit may rise, CVL at most float, no charging" in caplog.text
    # back: nothing jumps; the currents wait their hold and ramp
    back = poll(ctl, good, DT + 605)
    assert back.mode == "Bulk"
    assert (back.charge_current, back.discharge_current) == (5.0, 0.0)  # CCL fell 600 s ago, DCL just now
    assert back.alarms["BmsCable"] == 0


def test_an_optional_short_charge_grace() -> None:
    ctl = controller(ChargeConfig(stale_charge_grace=30.0))
    poll(ctl, pair(cells_of(3.30)), 0.0)
    limits = poll(ctl, pair(cells_of(3.30)), DT, fresh=False)
    assert limits.charge_current == 50.0
    assert limits.charge_reason == "no data: no fresh data; held up to 30 s (last highest cell 3.300 V)"
    assert poll(ctl, pair(cells_of(3.30)), DT + 30, fresh=False).charge_current == 0.0
    near_full = controller(ChargeConfig(stale_charge_grace=30.0))
    poll(near_full, pair(cells_of(3.42)), 0.0)
    assert poll(near_full, pair(cells_of(3.42)), DT, fresh=False).charge_current == 0.0


def test_no_grace_when_the_bank_was_low() -> None:
    ctl = controller()
    low = pair(cells_of(3.12))
    assert poll(ctl, low, 0.0).discharge_current == 35.0  # 3.12 V: 70 % of 50 A
    assert poll(ctl, low, DT, fresh=False).discharge_current == 0.0


def test_no_data_at_start_gives_safe_values() -> None:
    limits = poll(controller(), bank(absent(1), absent(2)), 0.0)
    assert (limits.charge_voltage, limits.charge_current, limits.discharge_current) == (50.62, 0.0, 0.0)
    assert limits.mode == "Safe (no data)"


def test_each_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="extra200.charge_limits")
    ctl = controller()
    poll(ctl, pair(cells_of(3.30)), 0.0)
    for i in range(1, 20):
        poll(ctl, pair(cells_of(3.30, high=3.41)), i * DT)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CCL")]
    assert lines == ["CCL - -> 50.0 A: max 25.0 A x 2 units", "CCL 50.0 -> 42.5 A: cell B1C15 3.410 V"]


# -- scenarios ---------------------------------------------------------------


class Run:
    """A controller fed poll after poll, ``DT`` apart, keeping what it published."""

    def __init__(self, ctl: ChargeController, now: float = 0.0) -> None:
        self.ctl = ctl
        self.now = now
        self.out: List[ChargeLimits] = []

    def poll(self, the_bank: Bank, polls: int = 1, fresh: bool = True) -> ChargeLimits:
        for _ in range(polls):
            self.out.append(poll(self.ctl, the_bank, self.now, fresh))
            self.now += DT
        return self.out[-1]

    def series(self, attr: str, last: int) -> List[float]:
        return [getattr(limits, attr) for limits in self.out[-last:]]


def test_scenario_charging_to_full_with_balancing() -> None:
    run = Run(controller())
    bulk = run.poll(pair(cells_of(3.35), soc=60.0, current=20.0), 10)
    assert (bulk.mode, bulk.charge_voltage, bulk.charge_current) == ("Bulk", 51.75, 50.0)

    # at CVL (pack 51.63 V >= 51.75 - 15 x 0.010) but cells 30 mV apart: absorption, balancing
    unbalanced = pair(cells_of(3.44, high=3.47), soc=97.0, current=3.0)
    limits = run.poll(unbalanced)
    assert (limits.mode, limits.charge_voltage, limits.charge_current) == ("Absorption", 51.75, 8.5)
    limits = run.poll(unbalanced, 720)  # an hour: the timer never starts while unbalanced
    assert limits.mode == "Absorption"

    balanced = pair(cells_of(3.445, high=3.46), soc=99.0, current=1.0)
    run.poll(balanced, 360)  # 1795 s balanced
    assert run.out[-1].mode == "Absorption"
    limits = run.poll(balanced)  # 1800 s
    assert (limits.mode, limits.charge_voltage, limits.voltage_reason) == ("Float", 50.62, "float 3.375 V x 15 cells")

    resting = pair(cells_of(3.36), soc=100.0, current=0.0)
    assert run.poll(resting, 100).mode == "Float"
    assert run.poll(pair(cells_of(3.33), soc=85.0, current=-10.0), 100).mode == "Float"

    # SoC below 80 %: bulk again; CVL climbs at 0.002 V/s (0.01 V per 5 s poll)
    low = pair(cells_of(3.30), soc=79.0, current=-10.0)
    limits = run.poll(low)
    assert (limits.mode, limits.charge_voltage) == ("Bulk", 50.63)
    run.poll(low, 120)
    climb = [50.62, 50.63] + run.series("charge_voltage", 120)
    assert all(0 <= b - a <= 0.0101 for a, b in zip(climb, climb[1:]))
    assert climb[-1] == 51.75
    assert climb.index(51.75) == 113  # 50.625 V + 113 x 0.01 V, counted from the float poll


def test_scenario_a_high_cell() -> None:
    run = Run(controller())
    run.poll(bank(unit(1, cells_of(3.40), current=10.0)), 4)
    limits = run.poll(bank(unit(1, cells_of(3.44, high=3.54), current=2.0)))
    assert limits.charge_voltage == 51.68  # pack 51.70 V less the 0.02 V overshoot, at once
    assert limits.voltage_reason == "cell B1C15 3.540 V above 3.520 V"
    assert limits.charge_current == 0.2  # 1 % of 25 A
    assert limits.alarms["HighCellVoltage"] == 0

    # just below the limit: CVL holds (rising would push the cell over again)
    near = bank(unit(1, cells_of(3.44, high=3.515), current=1.0))
    run.poll(near, 60)
    assert run.series("charge_voltage", 60) == [51.68] * 60
    assert run.out[-1].voltage_reason == "cell B1C15 3.515 V within 0.010 V of 3.520 V"

    # well below: slow recovery, 0.01 V per poll
    run.poll(bank(unit(1, cells_of(3.44, high=3.50), current=1.0)), 8)
    assert run.series("charge_voltage", 8) == [51.69, 51.70, 51.71, 51.72, 51.73, 51.74, 51.75, 51.75]

    # over the cut-off: no charging at all
    limits = run.poll(bank(unit(1, cells_of(3.44, high=3.56), current=1.0)))
    assert limits.charge_current == 0.0
    assert limits.charge_reason == "cell B1C15 3.560 V at/above cut-off 3.550 V"
    assert limits.alarms["HighCellVoltage"] == 1


def test_scenario_cold_morning() -> None:
    run = Run(controller())
    run.poll(pair(cells_of(3.30), temp=12.0))
    cold = run.poll(pair(cells_of(3.30), temp=-2.0, current=5.0), 120)
    assert cold.charge_current == 0.0
    assert cold.charge_reason == "cell temperature B1 -2.0 °C outside charge window 0..45 °C"
    assert cold.discharge_current == 19.0  # -2 °C: 38 % of 50 A
    assert raised(cold) == {"LowTemperature": 1, "LowChargeTemperature": 2}

    run.poll(pair(cells_of(3.30), temp=3.0), 8)  # 3 °C allows 12 %: a hold of 30 s from the frost's end, then 1 A/s
    assert run.series("charge_current", 8) == [0.0] * 5 + [5.0, 6.0, 6.0]
    run.poll(pair(cells_of(3.30), temp=12.0), 10)
    assert run.series("charge_current", 10) == [11.0, 16.0, 21.0, 26.0, 31.0, 36.0, 41.0, 46.0, 50.0, 50.0]
    assert run.out[-1].charge_reason == "max 25.0 A x 2 units"


def test_scenario_hot_afternoon() -> None:
    run = Run(controller())
    assert run.poll(pair(cells_of(3.35), temp=30.0, current=10.0), 3).charge_current == 50.0
    limits = run.poll(pair(cells_of(3.35), temp=43.0, current=10.0))
    assert limits.charge_current == 22.0  # hottest cell 43.5 °C: 44 % of 50 A
    assert limits.charge_reason == "cell temperature B1 43.5 °C"
    hot = run.poll(pair(cells_of(3.35), temp=46.0, current=10.0))
    assert hot.charge_current == 0.0
    assert hot.charge_reason == "cell temperature B1 46.5 °C outside charge window 0..45 °C"
    assert hot.discharge_current == 38.0  # 46.5 °C: 76 % of 50 A
    assert raised(hot) == {"HighTemperature": 1, "HighChargeTemperature": 2}
    run.poll(pair(cells_of(3.35), temp=40.5), 8)  # cooling: hold 30 s, then 1 A/s
    assert run.series("charge_current", 8) == [0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 10.0, 15.0]
    assert run.series("discharge_current", 8) == [38.0] * 5 + [43.0, 48.0, 50.0]


def test_scenario_empty_bank() -> None:
    run = Run(controller())
    steps = [(3.20, 50.0), (3.10, 25.0), (3.00, 5.0), (2.95, 2.5), (2.90, 0.0)]
    for lowest, dcl in steps:
        limits = run.poll(pair(cells_of(3.25, low=lowest), soc=4.0, current=-10.0))
        assert limits.discharge_current == dcl
        assert limits.charge_current == 50.0
    assert limits.discharge_reason == "cell B1C1 2.900 V at/below cut-off 2.900 V"
    assert not limits.allow_discharge
    assert raised(limits) == {"LowCellVoltage": 1, "LowSoc": 2, "CellImbalance": 2}  # 0.35 V spread
    assert limits.battery_low_voltage == 43.5
    run.poll(pair(cells_of(3.25, low=3.05), soc=5.0, current=10.0), 9)  # charging again
    assert run.series("discharge_current", 9) == [0.0] * 5 + [5.0, 10.0, 15.0, 15.0]  # hold 30 s, 1 A/s, up to 30 % at 3.05 V


def test_scenario_unit_dropping_out() -> None:
    run = Run(controller())
    three = bank(unit(1, cells_of(3.35)), unit(2, cells_of(3.35)), unit(3, cells_of(3.35)))
    limits = run.poll(three, 10)
    assert (limits.charge_voltage, limits.charge_current, limits.discharge_current) == (51.75, 75.0, 75.0)

    gone = bank(unit(1, cells_of(3.35)), unit(2, cells_of(3.35)), absent(3))
    limits = run.poll(gone)
    assert (limits.charge_voltage, limits.charge_current, limits.discharge_current) == (50.62, 50.0, 50.0)
    assert limits.mode == "Safe (unit 3 missing)"
    assert limits.charge_reason == "max 25.0 A x 2 units"
    assert raised(limits) == {"BmsCable": 1}

    # while it is missing nothing rises, but reductions still act
    run.poll(gone, 100)
    assert set(run.series("charge_current", 100)) == {50.0}
    limits = run.poll(bank(unit(1, cells_of(3.35, high=3.42)), unit(2, cells_of(3.35)), absent(3)))
    assert limits.charge_current == 35.0
    limits = run.poll(gone, 20)
    assert limits.charge_current == 35.0
    assert limits.charge_reason.startswith("held, unit 3 missing; rules allow CCL 50.0 A")

    # silent (configured, no row at all) counts the same
    silent = bank(unit(1, cells_of(3.35)), unit(2, cells_of(3.35)), Battery(3))
    assert run.poll(silent).mode == "Safe (unit 3 missing)"

    # back: CCL ramps at 0.5 A/s per unit, CVL at 0.002 V/s
    run.poll(three, 4)
    assert run.series("charge_current", 4) == [42.5, 50.0, 57.5, 65.0]
    assert run.series("charge_voltage", 4) == [50.63, 50.64, 50.65, 50.66]
    assert run.out[-1].mode == "Bulk"


# -- properties over random banks ---------------------------------------------

VOLT = st.floats(2.6, 3.75, allow_nan=False)
TEMP = st.floats(-25.0, 65.0, allow_nan=False)
STATES = st.sampled_from(["Normal", "Normal", "Normal", "High", "Low", None])
Draw = Callable[[Any], Any]  # hypothesis' draw function (st.DrawFn in newer versions)


@st.composite
def settings_pair(draw: Draw) -> Tuple[ChargeConfig, BatteryConfig]:
    charge = ChargeConfig(
        bulk_cell_voltage=draw(st.floats(3.30, 3.60)),
        float_cell_voltage=draw(st.floats(3.20, 3.45)),
        max_cell_voltage=draw(st.floats(3.40, 3.65)),
        charge_cutoff_cell_voltage=draw(st.floats(3.40, 3.65)),
        discharge_cutoff_cell_voltage=draw(st.floats(2.50, 3.20)),
        charge_min_temperature=draw(st.floats(-20, 20)),
        charge_max_temperature=draw(st.floats(20, 60)),
        absorption_time=draw(st.sampled_from([0.0, 30.0, 1800.0])),
        soc_derating=draw(st.booleans()),
        bms_states_block=draw(st.booleans()),
        current_recovery_hold=draw(st.sampled_from([0.0, 10.0, 30.0])),
        current_recovery_rate=draw(st.sampled_from([0.1, 0.5, 5.0])),
        cvl_recovery_hold=draw(st.sampled_from([0.0, 60.0])),
        cvl_recovery_rate=draw(st.sampled_from([0.001, 0.002, 0.05])),
        stale_charge_grace=draw(st.sampled_from([0.0, 0.0, 30.0])),
        stale_discharge_grace=draw(st.sampled_from([0.0, 600.0])),
    )
    battery = BatteryConfig(
        num_cells=draw(st.sampled_from([15, 16, "auto"])),
        max_charge_voltage=draw(st.one_of(st.floats(40.0, 58.4), st.just("auto"))),
        max_charge_current=draw(st.floats(0, 200)),
        max_discharge_current=draw(st.floats(0, 200)),
    )
    return charge, battery


@st.composite
def random_unit(draw: Draw, address: int, cells: int, now: float, whole: bool = False) -> Battery:
    """A unit in any condition: present (maybe with holes in its data), absent or silent; only present and
    whole when ``whole``."""
    kind = "ok" if whole else draw(st.sampled_from(["ok"] * 7 + ["absent", "silent", "no cells", "no temps", "no pack"]))
    if kind == "absent":
        return absent(address)
    if kind == "silent":
        return Battery(address)
    low = draw(VOLT)
    high = low + draw(st.floats(0.0, 0.4))
    voltages = [round(low + (high - low) * i / (cells - 1), 3) for i in range(cells)]
    t_low = draw(TEMP)
    t_high = t_low + draw(st.floats(0.0, 6.0))
    row = PowerRow(
        address,
        True,
        voltage=None if kind == "no pack" else round(sum(voltages), 3),
        current=draw(st.floats(-100, 100)),
        temperature=draw(st.one_of(st.none(), TEMP)),
        cell_temp_low=None if kind == "no temps" else t_low,
        cell_temp_high=None if kind == "no temps" else t_high,
        cell_voltage_low=None if kind == "no cells" else voltages[0],
        cell_voltage_high=None if kind == "no cells" else voltages[-1],
        voltage_state=draw(STATES),
        battery_voltage_state=draw(STATES),
        temperature_state=draw(STATES),
        soc=draw(st.one_of(st.none(), st.floats(0, 100))),
        mos_temperature=draw(st.one_of(st.none(), st.floats(20, 100))),
    )
    table = None
    table_time = None
    if draw(st.booleans()):
        shuffled = draw(st.permutations(voltages))
        table = CellTable(address, tuple(CellRow(i, voltage=v, temperature=draw(TEMP)) for i, v in enumerate(shuffled)))
        table_time = now - draw(st.sampled_from([0.0, 100.0, CELL_TABLE_MAX_AGE + 100]))
    info = None
    if draw(st.booleans()):
        info = DeviceInfo(
            cell_count=draw(st.sampled_from([None, 15, 16])),
            max_charge_current=draw(st.one_of(st.none(), st.just(0.0), st.floats(0, 120))),
            max_discharge_current=draw(st.one_of(st.none(), st.floats(0, 120))),
        )
    detail = None
    if draw(st.integers(0, 3)) == 0:  # a pwr N read, maybe with protection signals (finding 3)
        detail = PowerDetail(
            address,
            power_events=draw(st.sampled_from(sorted(POWER_EVENTS))),
            system_fault=draw(st.sampled_from([0, 0, 0x4])),
            extra={"CMOS Status": draw(st.sampled_from(["ON", "ON", "OFF"]))},
        )
    return Battery(address, row=row, cells=table, cells_time=table_time, info=info, detail=detail, row_time=now)


# Power Events values for random units: none, charge stops (over-voltage, charge over-current), discharge stops
# (under-voltage, discharge over-current), COULFULL (no stop)
POWER_EVENTS = {0: None, 0x1: "charge", 0x100000: "charge", 0x10: "discharge", 0x80000: "discharge", 0x2000: None}


def charge_stopped_by_the_bms(battery: Battery) -> bool:
    """Whether a present unit's own words or ``pwr N`` signals stop charging (``bms_states_block``): a voltage
    word other than Low, any abnormal temperature word, a charge-stop event, a System Fault, its charge switch off."""
    row, detail = battery.row, battery.detail
    assert row is not None
    words = [row.voltage_state, row.battery_voltage_state]
    if any(w not in (None, "Normal", "Low") for w in words) or row.temperature_state not in (None, "Normal"):
        return True
    return detail is not None and (POWER_EVENTS[detail.power_events or 0] == "charge" or bool(detail.system_fault))


def recent_cells(battery: Battery, now: float) -> List[CellRow]:
    """The cells of a table that counts next to the fresh row: one read in this poll."""
    if battery.cells is None or battery.cells_time is None or battery.cells_time < now:
        return []
    return list(battery.cells.cells)


def known(values: Sequence[Optional[float]]) -> List[float]:
    return [v for v in values if v is not None]


def degraded(the_bank: Bank, fresh: bool) -> bool:
    if not fresh or the_bank.missing or len(the_bank.present()) < len(the_bank.expected):
        return True
    for b in the_bank.present():
        row = b.row
        assert row is not None
        if None in (row.voltage, row.cell_voltage_low, row.cell_voltage_high, row.cell_temp_low, row.cell_temp_high):
            return True
    return False


QUANTUM = {"charge_voltage": 0.01, "charge_current": 0.1, "discharge_current": 0.1}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(settings_pair(), st.integers(1, 16), st.data())
def test_properties_over_random_banks(config: Tuple[ChargeConfig, BatteryConfig], n_units: int, data: Any) -> None:
    charge, battery = config
    ctl = ChargeController(charge, battery)
    now = 1000.0
    seen: Dict[int, set] = {}  # cell counts each unit reported so far
    history: List[Tuple[float, ChargeLimits, int]] = []  # (time, limits, units online)
    last_down: Dict[str, float] = {}
    settled = False
    for _ in range(data.draw(st.integers(1, 10), label="polls")):
        now += data.draw(st.sampled_from([1.0, 5.0, 30.0, 120.0]), label="dt")
        fresh = data.draw(st.sampled_from([True, True, True, True, False]), label="fresh")
        units = [
            data.draw(
                random_unit(a, battery.cells or data.draw(st.sampled_from([15, 16]), label="cells"), now), label="unit %d" % a
            )
            for a in range(1, n_units + 1)
        ]
        the_bank = bank(*units)
        limits = poll(ctl, the_bank, now, fresh)
        present = the_bank.present() if fresh else []
        for b in present:
            if b.cell_count in (15, 16):
                seen.setdefault(b.address, set()).add(b.cell_count)

        # CVL: never above the pack maximum, the fewest cells x max cell voltage, 52.8 V for 15 cells
        unknown = [b.address for b in present if not seen.get(b.address)]
        counts = set().union(*(seen.get(b.address, set()) for b in present)) | ({battery.cells} - {None})
        cells = min(counts | ({15} if unknown or not counts else set()))
        cap = battery.charge_voltage_cap
        assert limits.charge_voltage <= (56.0 if cap is None else cap) + 1e-9
        assert limits.charge_voltage <= cells * charge.max_cell_voltage + 1e-9
        if cells == 15:
            assert limits.charge_voltage <= 52.8
        # no charge current while a present unit's cell count is unknown
        if unknown:
            assert limits.charge_current == 0.0

        # CCL / DCL: never above any cap (without fresh data: never above the last value, checked below)
        online = len(present)
        if fresh:
            assert limits.charge_current <= battery.max_charge_current * online + 1e-9
            ratings = known([b.info.max_charge_current for b in present if b.info is not None])
            if ratings:
                assert limits.charge_current <= min(ratings) * online + 1e-9
            assert limits.discharge_current <= battery.max_discharge_current * online + 1e-9
            ratings = known([b.info.max_discharge_current for b in present if b.info is not None])
            if ratings:
                assert limits.discharge_current <= min(ratings) * online + 1e-9

        # cut-offs and the charge temperature window
        highs = known(
            [b.row.cell_voltage_high for b in present if b.row] + [c.voltage for b in present for c in recent_cells(b, now)]
        )
        lows = known(
            [b.row.cell_voltage_low for b in present if b.row] + [c.voltage for b in present for c in recent_cells(b, now)]
        )
        temps = known(
            [t for b in present if b.row for t in (b.row.cell_temp_low, b.row.cell_temp_high)]
            + [c.temperature for b in present for c in recent_cells(b, now)]
        )
        if (not fresh and charge.stale_charge_grace == 0) or any(v >= charge.charge_cutoff_cell_voltage for v in highs):
            assert limits.charge_current == 0.0
        if any(t < charge.charge_min_temperature or t > charge.charge_max_temperature for t in temps):
            assert limits.charge_current == 0.0
        if any(v <= charge.discharge_cutoff_cell_voltage for v in lows):
            assert limits.discharge_current == 0.0

        # charging must stop (a cut-off, the window, no data without a grace): CVL stops the chargers too,
        # at most the pack's voltage (never below the discharge cut-off x cells)
        packs = known([b.row.voltage for b in present if b.row])
        able = [b for b in present if not (b.detail and b.detail.extra.get("CMOS Status") == "OFF")]
        must_stop = (
            any(v >= charge.charge_cutoff_cell_voltage for v in highs)
            or any(t < charge.charge_min_temperature or t > charge.charge_max_temperature for t in temps)
            or (
                degraded(the_bank, fresh)
                and charge.stale_charge_grace == 0
                and the_bank.present()
                and fresh
                and not the_bank.missing
                and len(the_bank.present()) == len(the_bank.expected)
            )
            or (
                # no current at all: the configured maximum, a unit's rating, every charge switch off
                battery.max_charge_current == 0.0
                or not able
                or any(b.info is not None and b.info.max_charge_current == 0.0 for b in able)
            )
            or (charge.bms_states_block and any(charge_stopped_by_the_bms(b) for b in present))
        )
        if fresh and packs and must_stop:
            assert limits.charge_current == 0.0
            floor = cells * charge.discharge_cutoff_cell_voltage  # the fewest cells, as CVL counts them
            assert limits.charge_voltage <= max(min(packs), floor) + 1e-9, limits.voltage_reason

        complete = not degraded(the_bank, fresh) and not unknown
        # the first poll with complete data since start sets the limits at once: before it, they were the
        # rules' cautious answer while the data was arriving, not a reduction to hold or ramp from
        if history and (settled or not complete):
            before_time, before, before_online = history[-1]
            # missing or stale data never raises a limit
            if degraded(the_bank, fresh):
                for attr in QUANTUM:
                    assert getattr(limits, attr) <= getattr(before, attr), attr
            # rises only after the hold and no faster than the ramp
            for attr, quantum in QUANTUM.items():
                old, new = getattr(before, attr), getattr(limits, attr)
                if attr == "charge_voltage":
                    rate, hold = charge.cvl_recovery_rate, charge.cvl_recovery_hold
                else:
                    rate, hold = charge.current_recovery_rate * max(1, online), charge.current_recovery_hold
                if new < old:
                    last_down[attr] = now
                elif new > old:
                    assert new - old <= rate * (now - before_time) + quantum + 1e-9, attr
                    if attr in last_down:
                        assert now - last_down[attr] >= hold, attr
        history.append((now, limits, online))
        settled = settled or complete


# -- issue 12: findings of the review, each a reproducer ------------------------------------------


def test_a_stop_lowers_cvl_to_the_pack_so_solar_chargers_stop_too() -> None:
    """Finding 1: a frozen bank got CCL 0 but CVL 51.75 V; DVCC does not apply CCL to solar chargers under ESS feed-in."""
    run = Run(controller())
    run.poll(pair(cells_of(3.21), temp=12.0))
    frozen = run.poll(pair(cells_of(3.21), temp=-2.0))
    assert (frozen.charge_current, frozen.charge_voltage) == (0.0, 48.15)
    assert (
        frozen.voltage_reason
        == "charging stopped (cell temperature B1 -2.0 °C outside charge window 0..45 °C): at most the pack's 48.15 V"
    )
    # the pack sags while the loads run: CVL follows it down
    assert run.poll(pair(cells_of(3.20), temp=-2.0)).charge_voltage == 48.0
    # the cell cut-off and a BMS state word stop it the same way
    cut = poll(controller(), pair(cells_of(3.40, high=3.56)), 0.0)
    assert (cut.charge_current, cut.charge_voltage) == (0.0, 51.12)  # the pack less the cell's overshoot
    state = poll(controller(), bank(unit(1, cells_of(3.30), battery_voltage_state="High")), 0.0)
    assert (state.charge_current, state.charge_voltage) == (0.0, 49.5)
    # never below what keeps the system up: the discharge cut-off x cells
    empty_and_cold = poll(controller(), pair(cells_of(2.85), temp=-2.0), 0.0)
    assert empty_and_cold.charge_voltage == 43.5
    # warm again: CVL waits its hold, then climbs at its rate, like every rise
    run.poll(pair(cells_of(3.20), temp=12.0), 14)
    assert run.series("charge_voltage", 14) == [48.0] * 11 + [48.01, 48.02, 48.03]


def test_no_charge_current_at_all_lowers_cvl_as_every_stop_does() -> None:
    """Finding 1: every unit's BMS switched its charge off (Pytes CMOS Status OFF), a 0 A rating from ``info N``
    or ``battery.max_charge_current: 0`` gave CCL 0 with CVL left at bulk, so solar chargers under ESS kept
    charging; a maximum of 0 stops charging like any stop."""
    off = PowerDetail(1, extra={"CMOS Status": "OFF", "DMOS Status": "ON"})
    switched_off = poll(controller(), bank(unit(1, cells_of(3.30), detail=off)), 0.0)
    rated_zero = poll(controller(), pair(cells_of(3.30), info=DeviceInfo(max_charge_current=0.0)), 0.0)
    configured_zero = poll(controller(max_charge_current=0.0), pair(cells_of(3.30)), 0.0)
    for limits in (switched_off, rated_zero, configured_zero):
        assert (limits.charge_current, limits.charge_voltage) == (0.0, 49.5), limits.diagnostic
        assert limits.discharge_current > 0.0
    assert switched_off.voltage_reason == (
        "charging stopped (max 25.0 A x 0 units (unit 1 charge switched off by its BMS)): at most the pack's 49.50 V"
    )
    assert switched_off.units[1].blocks_charge
    # one unit of two switched off: the other still charges, CVL as usual
    one_off = poll(controller(), bank(unit(1, cells_of(3.30), detail=off), unit(2, cells_of(3.30))), 0.0)
    assert (one_off.charge_current, one_off.charge_voltage) == (25.0, 51.75)


def stop_signal_banks() -> List[Tuple[str, Dict[str, Any], Optional[PowerDetail], float, str]]:
    """(name, row changes, detail, unit current, side stopped) for each protection signal of finding 3."""
    return [
        ("Curr.St Over, charging", {"current_state": "Over"}, None, 20.0, "charge"),
        ("Curr.St Over, discharging", {"current_state": "Over"}, None, -20.0, "discharge"),
        ("SysAlarm.St Alarm", {"system_alarm_state": "Alarm"}, None, 0.0, "charge"),
        ("Power Events over-voltage", {}, PowerDetail(1, power_events=0x1), 0.0, "charge"),
        ("Power Events charge over-current", {}, PowerDetail(1, power_events=0x100000), 0.0, "charge"),
        ("System Fault", {}, PowerDetail(1, system_fault=0x4), 0.0, "charge"),
        ("Power Events under-voltage", {}, PowerDetail(1, power_events=0x10), 0.0, "discharge"),
        ("Power Events discharge over-current", {}, PowerDetail(1, power_events=0x80000), 0.0, "discharge"),
    ]


@pytest.mark.parametrize("name, row, detail, current, side", stop_signal_banks(), ids=[b[0] for b in stop_signal_banks()])
def test_protection_signals_stop_their_direction_until_clear_and_held(
    name: str, row: Dict[str, Any], detail: Optional[PowerDetail], current: float, side: str
) -> None:
    """Finding 3: these signals only raised alarms and left the limits at their maximum."""
    run = Run(controller())
    normal = dict(system_alarm_state="Normal")
    healthy = bank(unit(1, cells_of(3.30), current=current, **normal), unit(2, cells_of(3.30), current=current, **normal))  # type: ignore[arg-type]
    run.poll(healthy)
    signalled = bank(unit(1, cells_of(3.30), current=current, detail=detail, **row), unit(2, cells_of(3.30), current=current))
    limits = run.poll(signalled, 3)
    stopped, other = ("charge_current", "discharge_current") if side == "charge" else ("discharge_current", "charge_current")
    assert getattr(limits, stopped) == 0.0, limits.diagnostic
    assert getattr(limits, other) == 50.0, limits.diagnostic
    if side == "charge":
        assert limits.charge_voltage == 49.5  # the pack's voltage: CVL stops the chargers too
    assert limits.units[1].blocks_charge == (side == "charge") and not limits.units[2].blocks_charge
    # cleared (a pwr 1 read again without the bit): the hold (30 s from the last poll with the signal), then the ramp
    clear_detail = None if detail is None else PowerDetail(1, power_events=0, system_fault=0)
    cleared = bank(
        unit(1, cells_of(3.30), current=current, detail=clear_detail, **normal),
        unit(2, cells_of(3.30), current=current, **normal),
    )  # type: ignore[arg-type]
    run.poll(cleared, 8)
    assert run.series(stopped, 8) == [0.0] * 5 + [5.0, 10.0, 15.0]


def test_a_protection_signal_holds_until_a_later_pwr_n_shows_it_cleared() -> None:
    """Finding 3: Power Events and System Fault come only from ``pwr N``, which the poller reads on some polls
    only; a signal seen once keeps stopping its direction until a later ``pwr N`` shows it cleared, whether
    that detail is merely old or not known at all (a restart before ``pwr 1`` answers again)."""
    ctl = controller()
    run = Run(ctl)
    over_voltage = dataclasses.replace(unit(1, cells_of(3.30), detail=PowerDetail(1, power_events=0x1)), detail_time=0.0)
    low_voltage = dataclasses.replace(unit(2, cells_of(3.30), detail=PowerDetail(2, power_events=0x10)), detail_time=0.0)
    signalled = bank(over_voltage, low_voltage)
    run.poll(signalled, 24)  # 2 minutes without a new pwr N: the same old detail
    assert set(run.series("charge_current", 24)) == set(run.series("discharge_current", 24)) == {0.0}
    unread = bank(dataclasses.replace(over_voltage, detail=None), dataclasses.replace(low_voltage, detail=None))
    limits = run.poll(unread, 10)  # the detail not known this poll: still stopped, and the hold runs on
    assert (limits.charge_current, limits.discharge_current) == (0.0, 0.0), limits.diagnostic
    assert limits.charge_reason == "B1 Power Events 0x1: over-voltage"
    assert limits.discharge_reason == "B2 Power Events 0x10: under-voltage"
    # across a restart: the first polls publish before pwr N is read again
    restarted = controller()
    assert restarted.restore(json.loads(json.dumps(ctl.state())), age=40.0)
    again = Run(restarted, now=7.0)
    after = again.poll(unread, 10)
    assert set(again.series("charge_current", 10)) == set(again.series("discharge_current", 10)) == {0.0}, after.diagnostic
    # a later pwr N shows them cleared: the hold, then the ramp
    cleared = bank(
        dataclasses.replace(over_voltage, detail=PowerDetail(1, power_events=0)),
        dataclasses.replace(low_voltage, detail=PowerDetail(2, power_events=0)),
    )
    again.poll(cleared, 8)
    assert again.series("charge_current", 8) == again.series("discharge_current", 8) == [0.0] * 5 + [5.0, 10.0, 15.0]


def test_bms_states_block_false_ignores_the_protection_signals_too() -> None:
    detail = PowerDetail(1, power_events=0x1, system_fault=0x4)
    limits = poll(controller(ChargeConfig(bms_states_block=False)), bank(unit(1, cells_of(3.30), detail=detail)), 0.0)
    assert limits.charge_current == 25.0
    assert limits.alarms["InternalFailure"] == 2


def test_a_vanished_reading_keeps_its_derating() -> None:
    """Finding 4: a MOSFET at 85 °C gave 3.1 A; when the reading turned "-" CCL ramped back to 25 A within 40 s."""
    run = Run(controller())
    hot = run.poll(bank(unit(1, cells_of(3.30), mos_temperature=85.0)))
    assert (hot.charge_current, hot.charge_reason) == (3.1, "MOSFET B1 85.0 °C")
    run.poll(bank(unit(1, cells_of(3.30), mos_temperature=None)), 20)
    assert set(run.series("charge_current", 20)) == {3.1}
    assert run.out[-1].charge_reason == "MOSFET B1 85.0 °C"
    # back, and cool: the derating lifts (hold, then the ramp)
    run.poll(bank(unit(1, cells_of(3.30), mos_temperature=30.0)), 8)
    assert run.series("charge_current", 8)[-1] > 3.1


def test_vanished_cell_voltages_keep_their_derating_and_the_pack_still_bounds_them() -> None:
    """Finding 4, cell voltages: DCL stayed full for 600 s while a unit's cells were missing.  While a unit's
    cells are unknown (no cell extremes in its row, no cell table), its last cells keep their derating, and
    its pack voltage still counts: the lowest cell is at most the average, the highest at least."""
    run = Run(controller())
    run.poll(pair(cells_of(3.25)), 2)
    unknown = dict(cell_voltage_high=None, cell_voltage_low=None)
    held = run.poll(bank(unit(1, cells_of(3.25)), unit(2, cells_of(3.25), **unknown)))
    assert held.discharge_current == 50.0  # the discharge grace: the last lowest cell was far from empty
    # the load pulls unit 2's pack down while its cells stay unknown
    sagging = run.poll(bank(unit(1, cells_of(3.25)), unit(2, cells_of(3.10), **unknown)))
    assert sagging.discharge_current == 25.0, sagging.diagnostic  # 50 % at 3.10 V
    assert sagging.discharge_reason == "B2 cells unknown, pack 46.50 V: 3.100 V per cell on average"
    empty = run.poll(bank(unit(1, cells_of(3.25)), unit(2, cells_of(2.89), **unknown)))
    assert empty.discharge_current == 0.0
    assert empty.discharge_reason.endswith("2.890 V per cell on average at/below cut-off 2.900 V")
    # back up: nothing rises while the cells stay unknown
    assert run.poll(bank(unit(1, cells_of(3.25)), unit(2, cells_of(3.25), **unknown)), 10).discharge_current == 0.0
    # the last cells' derating is kept too: a unit at 3.12 V (70 %) whose cells vanish is held no higher
    derated = Run(controller(ChargeConfig(stale_charge_grace=60.0, stale_discharge_grace=600.0)))
    derated.poll(pair(cells_of(3.30, high=3.42, low=3.12)), 2)
    gone = derated.poll(bank(unit(1, cells_of(3.30)), unit(2, cells_of(3.30, high=3.42, low=3.12), **unknown)), 4)
    assert gone.discharge_current == 0.0  # no grace for a derated lowest cell: 0, never above the 35 A before
    # the charge side, with a charge grace: the pack climbing while the cells are unknown lowers CCL
    charging = Run(controller(ChargeConfig(stale_charge_grace=60.0)))
    charging.poll(pair(cells_of(3.35)), 2)
    assert charging.poll(bank(unit(1, cells_of(3.35)), unit(2, cells_of(3.35), **unknown))).charge_current == 50.0
    rising = charging.poll(bank(unit(1, cells_of(3.35)), unit(2, cells_of(3.47), **unknown)))
    assert rising.charge_current == 8.5, rising.diagnostic  # 17 % at 3.47 V
    assert rising.charge_reason == "B2 cells unknown, pack 52.05 V: 3.470 V per cell on average"
    over = charging.poll(bank(unit(1, cells_of(3.35)), unit(2, cells_of(3.56), **unknown)))
    assert over.charge_current == 0.0
    assert over.charge_voltage <= 53.4  # charging stopped: at most the pack


def test_a_vanished_state_word_or_soc_keeps_its_effect() -> None:
    run = Run(controller(ChargeConfig(soc_derating=True)))
    high = run.poll(bank(unit(1, cells_of(3.30), battery_voltage_state="High", soc=50.0)))
    assert high.charge_current == 0.0
    assert run.poll(bank(unit(1, cells_of(3.30), battery_voltage_state=None)), 10).charge_current == 0.0
    run.poll(bank(unit(1, cells_of(3.30), battery_voltage_state="Normal")), 20)  # a real word clears it
    full = run.poll(bank(unit(1, cells_of(3.30), soc=97.0)), 10)
    assert full.charge_current == 3.3
    assert run.poll(bank(unit(1, cells_of(3.30), soc=None)), 10).charge_current == 3.3


def test_an_empty_bank_in_syserror_may_still_recharge() -> None:
    """Finding 5: Base.St SysError with low-voltage states at 4 % gave CCL 0 and DCL 0: a deadlock."""
    words = dict(base_state="SysError", voltage_state="Low", battery_voltage_state="Low")
    empty = pair(cells_of(3.00, low=2.95), soc=4.0, **words)
    limits = poll(controller(), empty, 0.0)
    assert (limits.charge_current, limits.discharge_current) == (5.0, 0.0)  # 10 % of 50 A
    assert limits.charge_reason == "BMS state B1 Base.St SysError at the low cut-off: 10 % allowed to recharge"
    assert limits.allow_charge and limits.charge_voltage == 51.75
    # something else forbidding charging still wins
    cold = poll(controller(), pair(cells_of(3.00, low=2.95), soc=4.0, temp=-3.0, **words), 0.0)
    assert cold.charge_current == 0.0
    # SysError without a low voltage still stops charging
    assert poll(controller(), pair(cells_of(3.30), base_state="SysError"), 0.0).charge_current == 0.0


def test_restart_resumes_phase_holds_and_ramps() -> None:
    """Finding 6: after a restart CCL jumped 0 -> 9 A, DCL 11 -> 25 A, and from float CVL 50.62 -> 51.75 V."""
    ctl = controller(ChargeConfig(absorption_time=0.0))
    run = Run(ctl)
    run.poll(pair(cells_of(3.45), soc=100.0), 3)  # absorption, then float at once (balanced, absorption_time 0)
    low_dcl = run.poll(pair(cells_of(3.15, low=3.11), soc=95.0, temp=-1.0))  # frost: CCL 0, DCL derated
    assert (low_dcl.mode, low_dcl.charge_voltage, low_dcl.charge_current, low_dcl.discharge_current) == (
        "Float",
        47.21,
        0.0,
        22.0,
    )
    saved = ctl.state()
    assert yaml.safe_load(yaml.safe_dump(saved)) == saved  # a plain document

    restarted = controller(ChargeConfig(absorption_time=0.0))
    assert restarted.restore(saved, age=20.0)
    again = Run(restarted, now=50.0)  # another monotonic clock
    warm = pair(cells_of(3.36), soc=95.0, temp=20.0)
    first = again.poll(warm)
    assert (first.mode, first.charge_voltage, first.charge_current, first.discharge_current) == ("Float", 47.21, 0.0, 22.0)
    again.poll(warm, 3)  # 20 s + 15 s since the reductions: the 30 s hold ends, then the ramps
    assert again.series("charge_current", 3) == [0.0, 5.0, 10.0]
    assert again.series("discharge_current", 3) == [22.0, 27.0, 32.0]

    fresh = controller()
    assert poll(fresh, warm, 0.0).charge_voltage == 51.75  # without the state: bulk, at once
    stale = controller()
    assert not stale.restore(saved, age=3600.0)  # too old to resume
    assert poll(stale, warm, 0.0).mode == "Bulk"
    assert not controller().restore({"version": 99}, age=1.0)


def test_charge_control_off_publishes_the_configured_maximums(caplog: pytest.LogCaptureFixture) -> None:
    """Finding 7: charge.enabled false was documented and read by no code."""
    ctl = controller(ChargeConfig(enabled=False))
    assert "charge.enabled is false" in caplog.text
    limits = poll(ctl, pair(cells_of(3.40, high=3.56), temp=-5.0), 0.0)
    # max_charge_voltage auto: the 15-cell ceiling
    assert (limits.charge_voltage, limits.charge_current, limits.discharge_current) == (52.8, 50.0, 50.0)
    assert limits.mode == "Off"
    capped = poll(controller(ChargeConfig(enabled=False), max_charge_voltage=52.5), pair(cells_of(3.40)), 0.0)
    assert capped.charge_voltage == 52.5
    assert limits.alarms["HighCellVoltage"] == 1  # alarms still tell
    assert poll(ctl, bank(absent(1), absent(2)), DT).charge_current == 0.0


def test_absorption_ends_after_its_maximum_time_whatever_the_spread() -> None:
    """Finding 8: with a 30 mV spread the bank was still in absorption after 12 h."""
    run = Run(controller(ChargeConfig(absorption_max_time=600.0)))
    unbalanced = pair(cells_of(3.44, high=3.47), soc=99.0, current=2.0)
    assert run.poll(unbalanced, 2).mode == "Absorption"
    run.poll(unbalanced, 120)
    assert [m.mode for m in run.out[-2:]] == ["Absorption", "Float"]


def test_a_cell_running_ahead_lets_absorption_start_at_the_lowered_cvl() -> None:
    """Finding 8: one cell ahead held CVL below the absorption threshold, so the bank stayed in bulk."""
    run = Run(controller(ChargeConfig(absorption_time=60.0)))
    run.poll(pair(cells_of(3.42), current=10.0), 2)
    runner = pair(cells_of(3.42, high=3.53), current=2.0)  # pack 51.41 V; CVL lowered to 51.40 V
    limits = run.poll(runner)
    assert (limits.mode, limits.charge_voltage) == ("Bulk", 51.4)
    assert run.poll(runner).mode == "Absorption"


def test_a_periodic_full_charge_reaches_the_bms_full_state() -> None:
    """Finding 8: a Pylontech BMS must reach full now and then to recalibrate its SoC."""
    days = 10.0 / 86400.0  # due after 10 s
    run = Run(controller(ChargeConfig(full_charge_days=days, cvl_recovery_rate=0.1, absorption_time=5.0)))
    charging = pair(cells_of(3.44), soc=98.0, current=5.0)
    assert run.poll(charging, 2).charge_voltage == 51.75
    limits = run.poll(charging)  # 10 s: due
    assert limits.voltage_reason.startswith("rising at 0.1 V/s to CVL 52.50 V (full charge 3.500 V x 15 cells")
    assert run.poll(charging, 2).charge_voltage == 52.5
    # the cells keep to max_cell_voltage: the high-cell rule still lowers CVL
    over = run.poll(pair(cells_of(3.49, high=3.53), soc=99.0, current=2.0))
    assert over.charge_voltage == 52.38  # pack 52.39 V less the 0.01 V overshoot
    # the BMS reports full: done, float
    full = run.poll(pair(cells_of(3.49), soc=100.0, current=1.0))
    assert (full.mode, full.charge_voltage) == ("Float", 50.62)
    # not due again for another interval: re-bulk aims at the ordinary bulk target
    rebulk = run.poll(pair(cells_of(3.30), soc=70.0))
    assert rebulk.mode == "Bulk" and rebulk.voltage_reason.endswith("(bulk 3.450 V x 15 cells)")


def test_a_full_charge_that_never_reports_full_gives_up_after_the_maximum_time(caplog: pytest.LogCaptureFixture) -> None:
    days = 5.0 / 86400.0
    run = Run(controller(ChargeConfig(full_charge_days=days, cvl_recovery_rate=1.0, absorption_max_time=300.0)))
    at_top = pair(cells_of(3.495), soc=99.0, current=1.0)
    run.poll(at_top, 62)  # due at 5 s, absorption at once, 300 s of absorption
    assert [m.mode for m in run.out[-2:]] == ["Absorption", "Float"]
    assert "Full charge: no unit-wide full report after 300 s" in caplog.text


def test_the_absorption_clock_stops_while_there_is_no_data() -> None:
    """Finding 9: the absorption timer survived a stretch without data; float came at once when data returned."""
    run = Run(controller())
    balanced = pair(cells_of(3.445, high=3.46), soc=99.0, current=1.0)
    run.poll(balanced, 300)  # absorption, 1495 s balanced
    assert run.out[-1].mode == "Absorption"
    run.poll(balanced, 120, fresh=False)  # 600 s without data
    assert run.poll(balanced).mode == "Absorption"
    run.poll(balanced, 62)  # 1485 s before the gap + 310 s after it
    assert run.out[-1].mode == "Absorption"
    assert run.poll(balanced).mode == "Float"


def test_each_unit_carries_its_own_limits_and_alarms() -> None:
    """Issue 10: unit 1's topic showed HighCellVoltage and CCL 0 caused by a cell of unit 2."""
    limits = poll(controller(), bank(unit(1, cells_of(3.30)), unit(2, cells_of(3.40, high=3.56))), 0.0)
    assert limits.charge_current == 0.0
    one, two = limits.units[1], limits.units[2]
    assert (one.charge_current, one.discharge_current, one.blocks_charge, one.blocks_discharge) == (25.0, 25.0, False, False)
    assert {k: v for k, v in one.alarms.items() if v} == {}
    assert (two.charge_current, two.blocks_charge, two.blocks_discharge) == (0.0, True, False)
    assert two.charge_reason == "cell B2C15 3.560 V at/above cut-off 3.550 V"
    assert {k: v for k, v in two.alarms.items() if v} == {"HighCellVoltage": 1, "CellImbalance": 1}
    assert sorted(one.alarms) == sorted(ALARM_NAMES)
    # each unit's own share never exceeds its share of the bank maximum (the lowest rating x units)
    rated = poll(
        controller(), bank(unit(1, cells_of(3.30), info=DeviceInfo(max_charge_current=10.0)), unit(2, cells_of(3.30))), 0.0
    )
    assert (rated.charge_current, rated.units[1].charge_current, rated.units[2].charge_current) == (20.0, 10.0, 10.0)
    # a unit without cell data blocks by itself
    blind = poll(
        controller(), bank(unit(1, cells_of(3.30)), unit(2, cells_of(3.30), cell_voltage_high=None, cell_voltage_low=None)), 0.0
    )
    assert blind.units[2].blocks_charge and blind.units[2].charge_reason == "no data: B2 reports no cell voltages"
    assert not blind.units[1].blocks_charge


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(settings_pair(), st.integers(1, 3), st.data())
def test_whenever_the_rules_stop_charging_cvl_stops_it_too(
    config: Tuple[ChargeConfig, BatteryConfig], n_units: int, data: Any
) -> None:
    """Finding 1 over random sequences of complete banks (the broad property above rarely builds one where a
    single quiet rule gives 0): whenever CCL is 0 by the rules (not a hold after a stop), CVL is at most the
    pack's voltage (or the discharge cut-off x cells, whichever is higher)."""
    charge, battery = config
    ctl = ChargeController(charge, battery)
    now = 1000.0
    for _ in range(data.draw(st.integers(1, 6), label="polls")):
        now += data.draw(st.sampled_from([1.0, 5.0, 30.0, 120.0]), label="dt")
        units = [
            data.draw(random_unit(a, battery.cells or 15, now, whole=True), label="unit %d" % a) for a in range(1, n_units + 1)
        ]
        limits = poll(ctl, bank(*units), now)
        if limits.charge_current == 0.0 and not limits.charge_reason.startswith("held"):
            packs = [b.row.voltage for b in units if b.row is not None and b.row.voltage is not None]
            floor = 16 * charge.discharge_cutoff_cell_voltage  # the most cells any unit counts
            assert limits.charge_voltage <= max(min(packs), floor) + 1e-9, limits.diagnostic


# readings whose loss leaves the rules running (the others make the data incomplete: nothing rises anyway)
QUIET_LOSSES = (
    "current",
    "temperature",
    "voltage_state",
    "temperature_state",
    "soc",
    "battery_voltage_state",
    "mos_temperature",
    "base_state",
)
BLINDING_LOSSES = ("voltage", "cell_temp_low", "cell_temp_high", "cell_voltage_low", "cell_voltage_high")


def later(battery: Battery, dt: float, vanished: Sequence[str] = ()) -> Battery:
    """The same unit ``dt`` later (its cell table as old as before), with the ``vanished`` readings printed as "-"."""
    if battery.row is None or not battery.row.present:
        return battery
    return dataclasses.replace(
        battery,
        row=dataclasses.replace(battery.row, **{name: None for name in vanished}),
        row_time=(battery.row_time or 0.0) + dt,
        cells_time=None if battery.cells_time is None else battery.cells_time + dt,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(settings_pair(), st.integers(1, 3), st.data())
def test_no_vanished_reading_raises_a_limit(config: Tuple[ChargeConfig, BatteryConfig], n_units: int, data: Any) -> None:
    charge, battery = config
    ctl = ChargeController(charge, battery)
    now = 1000.0
    units = [data.draw(random_unit(a, battery.cells or 15, now, whole=True), label="unit %d" % a) for a in range(1, n_units + 1)]
    for _ in range(data.draw(st.integers(1, 4), label="polls before")):
        before = poll(ctl, bank(*units), now)
        now += DT
        units = [later(b, DT) for b in units]
    for _ in range(data.draw(st.integers(1, 4), label="polls after")):
        vanished = [
            data.draw(
                st.lists(st.sampled_from(QUIET_LOSSES), min_size=1, max_size=3, unique=True)
                | st.lists(st.sampled_from(QUIET_LOSSES + BLINDING_LOSSES), unique=True),
                label="vanished %d" % b.address,
            )
            for b in units
        ]
        gone = [later(b, 0.0, v) for b, v in zip(units, vanished)]
        after = poll(ctl, bank(*gone), now)
        for attr in QUANTUM:
            assert getattr(after, attr) <= getattr(before, attr), (attr, vanished, after.diagnostic, before.diagnostic)
        now += DT
        units = [later(b, DT) for b in gone]
        before = after


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(settings_pair(), st.integers(1, 6), st.data())
def test_limits_after_a_restart_are_never_above_those_before(
    config: Tuple[ChargeConfig, BatteryConfig], n_units: int, data: Any
) -> None:
    charge, battery = config
    ctl = ChargeController(charge, battery)
    now = 1000.0
    for _ in range(data.draw(st.integers(1, 8), label="polls")):
        now += data.draw(st.sampled_from([1.0, 5.0, 30.0]), label="dt")
        units = [data.draw(random_unit(a, battery.cells or 15, now), label="unit %d" % a) for a in range(1, n_units + 1)]
        before = poll(ctl, bank(*units), now, data.draw(st.sampled_from([True, True, False]), label="fresh"))
    saved = json.loads(json.dumps(ctl.state()))  # through the file's format
    age = data.draw(st.floats(0.0, 900.0), label="age")
    restarted = ChargeController(charge, battery)
    assert restarted.restore(saved, age)
    # the first poll after a restart publishes before pwr N is read again: the details may be unknown
    unread = data.draw(st.booleans(), label="pwr N not read yet")
    units = [dataclasses.replace(later(b, age), detail=None) if unread else later(b, age) for b in units]
    after = poll(restarted, bank(*units), data.draw(st.floats(0.0, 1e6), label="new clock"))
    for attr in QUANTUM:
        assert getattr(after, attr) <= getattr(before, attr), (attr, after.diagnostic, before.diagnostic)


def test_the_state_file_round_trip(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The daemon's side of finding 6: the state in <state_dir>/charge_state.json, its age from the wall clock."""
    from extra200.charge import ChargeStateFile

    ctl = controller(ChargeConfig(absorption_time=0.0))
    for i in range(3):
        poll(ctl, pair(cells_of(3.45), soc=100.0), i * DT)
    assert ctl.phase == "Float"
    store = ChargeStateFile(str(tmp_path))
    assert store.save(ctl, now=1000.0)
    assert store.save_if_due(ctl, 1030.0, 60.0)  # not due: nothing written
    assert json.loads((tmp_path / "charge_state.json").read_text())["saved_at"] == 1000.0

    resumed = controller()
    assert ChargeStateFile(str(tmp_path)).load(resumed, now=1100.0)
    assert poll(resumed, pair(cells_of(3.40), soc=99.0), 0.0).mode == "Float"
    assert not ChargeStateFile(str(tmp_path)).load(controller(), now=1000.0 + 3600.0)  # an hour old: afresh
    # a controller that never polled does not overwrite the saved state
    assert ChargeStateFile(str(tmp_path)).save(controller(), now=2000.0)
    assert json.loads((tmp_path / "charge_state.json").read_text())["saved_at"] == 1000.0
    # a corrupt file is moved aside and logged, never fatal
    (tmp_path / "charge_state.json").write_text("{not json")
    assert not ChargeStateFile(str(tmp_path)).load(controller())
    assert (tmp_path / "charge_state.json.corrupt").exists()
    assert "cannot be read" in caplog.text


def test_a_stop_is_saved_at_once_so_a_crash_does_not_lift_it(tmp_path: Any) -> None:
    """Finding 6: the state was written every state_save_interval, so a crash 25 s after a frost stop resumed the
    state from before it: CCL 0 -> 10 A and CVL 49.50 -> 51.75 V at once as the bank warmed.  A limit reaching
    (or leaving) 0 is saved at once, like a phase change."""
    from extra200.charge import ChargeStateFile

    ctl = controller()
    store = ChargeStateFile(str(tmp_path))
    assert store.save_if_due(ctl, 1000.0, 60.0) and not (tmp_path / "charge_state.json").exists()  # nothing yet
    poll(ctl, pair(cells_of(3.30)), 0.0)
    assert store.save_if_due(ctl, 1000.0, 60.0)
    frost = poll(ctl, pair(cells_of(3.30), temp=-2.0), DT)
    assert (frost.charge_current, frost.charge_voltage) == (0.0, 49.5)
    assert store.save_if_due(ctl, 1000.0 + DT, 60.0)
    assert json.loads((tmp_path / "charge_state.json").read_text())["saved_at"] == 1000.0 + DT
    poll(ctl, pair(cells_of(3.30), temp=-2.0), 2 * DT)
    assert store.save_if_due(ctl, 1000.0 + 2 * DT, 60.0)  # nothing changed: not written again
    assert json.loads((tmp_path / "charge_state.json").read_text())["saved_at"] == 1000.0 + DT
    # crash; warmer when it starts again 25 s later: the stop's hold still counts, CVL stays at the pack
    resumed = controller()
    assert ChargeStateFile(str(tmp_path)).load(resumed, now=1000.0 + DT + 25.0)
    after = poll(resumed, pair(cells_of(3.30), temp=5.0), 0.0)
    assert (after.charge_current, after.charge_voltage) == (0.0, 49.5), after.diagnostic


def test_limits_rise_at_once_when_the_first_complete_data_arrives() -> None:
    """Issue 11: the first bank message goes out before the cell counts are known, with the cautious limits;
    once the console has told everything, the limits are what the rules allow, with no hold or ramp from the
    start-up zero (which was no reduction).  Later reductions hold and ramp as ever."""
    ctl = controller()
    first = bank(
        dataclasses.replace(unit(1, cells_of(3.30)), info=DeviceInfo()),
        dataclasses.replace(unit(2, cells_of(3.30)), info=DeviceInfo()),
    )
    early = poll(ctl, first, 0.0)
    assert early.charge_current == 0.0 and "cell count not known yet" in early.charge_reason
    known = poll(ctl, pair(cells_of(3.30)), DT)
    assert known.charge_current == 50.0 and known.mode == "Bulk"
    assert known.charge_voltage == 51.75
    # a real reduction afterwards is held as before
    assert poll(ctl, pair(cells_of(3.30, high=3.50)), 2 * DT).charge_current < 50.0
    assert poll(ctl, pair(cells_of(3.30)), 3 * DT).charge_current < 50.0


def test_a_charge_state_that_cannot_be_written_is_logged_once_and_its_recovery_once(tmp_path: Any, caplog: Any) -> None:
    from extra200.charge import ChargeStateFile

    state = tmp_path / "state"
    state.write_text("a file where the state directory should be")
    ctl = controller()
    poll(ctl, pair(cells_of(3.30)), 0.0)
    store = ChargeStateFile(str(state))
    with caplog.at_level(logging.INFO, logger="extra200.charge_state"):
        assert not store.save(ctl, 1000.0)
        assert not store.save(ctl, 1001.0)
        state.unlink()
        state.mkdir()
        assert store.save(ctl, 1002.0)
        assert store.save(ctl, 1003.0)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "extra200.charge_state"]
    path = str(state / "charge_state.json")
    assert [level for level, _ in lines] == ["WARNING", "INFO"]
    assert lines[0][1].startswith("charge state: cannot write %s (" % path) and lines[0][1].endswith("); retrying")
    assert lines[1][1] == "charge state: %s written again" % path
