"""Charge control (charge_limits.py): the rules poll by poll, six scenarios, and properties over random banks.

Banks are built by hand from the model records, the way the parser fills
them; ``summarize_bank`` (derive.py) makes the summary as in the daemon.
Times are the controller's monotonic clock, in seconds.
"""

import dataclasses
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extra200.charge_limits import ALARM_NAMES, CELL_TABLE_MAX_AGE, ChargeController, ChargeLimits, Curve
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
    **row: object
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
        table = CellTable(address, tuple(CellRow(i, voltage=v, temperature=temp, voltage_state="Normal", temperature_state="Normal") for i, v in enumerate(cells)))
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
    assert ChargeConfig.parse_curve(config.charge.discharge_temperature_curve) == ((-10.0, 0.0), (-5.0, 20.0), (0.0, 50.0), (5.0, 100.0))
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
    assert limits.diagnostic == "Bulk | CVL 51.75 V: bulk 3.450 V x 15 cells | CCL 50.0 A: max 25.0 A x 2 units | DCL 50.0 A: max 25.0 A x 2 units"


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


def test_a_recent_cell_table_counts_an_old_one_does_not() -> None:
    cells = cells_of(3.40, high=3.56)
    now = 10000.0
    recent = unit(1, cells, table_time=now - 60, cell_voltage_high=3.40, cell_voltage_high_id=None)
    limits = poll(controller(), bank(recent), now)
    assert limits.charge_current == 0.0
    assert limits.charge_reason == "cell B1C15 3.560 V at/above cut-off 3.550 V"
    old = unit(1, cells, table_time=now - CELL_TABLE_MAX_AGE - 1, cell_voltage_high=3.40, cell_voltage_high_id=None)
    assert poll(controller(), bank(old), now).charge_current == 25.0


def test_bms_state_words_stop_charge_or_discharge() -> None:
    high = poll(controller(), bank(unit(1, cells_of(3.40), battery_voltage_state="High"), unit(2, cells_of(3.40))), 0.0)
    assert (high.charge_current, high.discharge_current) == (0.0, 50.0)
    assert high.charge_reason == "BMS state B1 B.V.St High"
    assert high.alarms["HighCellVoltage"] == 1
    low = poll(controller(), bank(unit(1, cells_of(3.10), voltage_state="Low"), unit(2, cells_of(3.10))), 0.0)
    assert (low.charge_current, low.discharge_current) == (50.0, 0.0)
    assert low.discharge_reason == "BMS state B1 Volt.St Low"
    assert low.alarms["LowVoltage"] == 1
    ignored = poll(controller(ChargeConfig(bms_states_block=False)), bank(unit(1, cells_of(3.40), battery_voltage_state="High")), 0.0)
    assert ignored.charge_current == 25.0
    assert ignored.alarms["HighCellVoltage"] == 1


def test_charge_mosfet_off_removes_that_unit_from_the_charge_maximum() -> None:
    off = PowerDetail(1, extra={"CMOS Status": "OFF", "DMOS Status": "ON"})
    limits = poll(controller(), bank(unit(1, cells_of(3.30), detail=off), unit(2, cells_of(3.30))), 0.0)
    assert limits.charge_current == 25.0
    assert limits.charge_reason == "max 25.0 A x 1 units (unit 1 charge switched off by its BMS)"
    assert limits.discharge_current == 50.0


def test_events_and_faults_set_alarms_only() -> None:
    detail = PowerDetail(1, power_events=0x1 | 0x100000, system_fault=0x20, soh_state="Abnormal")
    limits = poll(controller(), bank(unit(1, cells_of(3.30), detail=detail, current=5.0)), 0.0)
    assert limits.charge_current == 25.0
    assert raised(limits) == {"HighVoltage": 2, "HighChargeCurrent": 1, "HighCurrent": 1, "InternalFailure": 2, "StateOfHealth": 1}


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
    assert limits.charge_voltage == 50.62
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

    run.poll(pair(cells_of(3.30), temp=3.0), 2)  # 3 °C allows 12 %: ramps at 1 A/s
    assert run.series("charge_current", 2) == [5.0, 6.0]
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
def random_unit(draw: Draw, address: int, cells: int, now: float) -> Battery:
    """A unit in any condition: present (maybe with holes in its data), absent or silent."""
    kind = draw(st.sampled_from(["ok"] * 7 + ["absent", "silent", "no cells", "no temps", "no pack"]))
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
            max_charge_current=draw(st.one_of(st.none(), st.floats(0, 120))),
            max_discharge_current=draw(st.one_of(st.none(), st.floats(0, 120))),
        )
    return Battery(address, row=row, cells=table, cells_time=table_time, info=info)


def recent_cells(battery: Battery, now: float) -> List[CellRow]:
    if battery.cells is None or battery.cells_time is None or now - battery.cells_time > CELL_TABLE_MAX_AGE:
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
    for _ in range(data.draw(st.integers(1, 10), label="polls")):
        now += data.draw(st.sampled_from([1.0, 5.0, 30.0, 120.0]), label="dt")
        fresh = data.draw(st.sampled_from([True, True, True, True, False]), label="fresh")
        units = [data.draw(random_unit(a, battery.cells or data.draw(st.sampled_from([15, 16]), label="cells"), now),
                           label="unit %d" % a) for a in range(1, n_units + 1)]
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
        highs = known([b.row.cell_voltage_high for b in present if b.row] + [c.voltage for b in present for c in recent_cells(b, now)])
        lows = known([b.row.cell_voltage_low for b in present if b.row] + [c.voltage for b in present for c in recent_cells(b, now)])
        temps = known([t for b in present if b.row for t in (b.row.cell_temp_low, b.row.cell_temp_high)] + [c.temperature for b in present for c in recent_cells(b, now)])
        if (not fresh and charge.stale_charge_grace == 0) or any(v >= charge.charge_cutoff_cell_voltage for v in highs):
            assert limits.charge_current == 0.0
        if any(t < charge.charge_min_temperature or t > charge.charge_max_temperature for t in temps):
            assert limits.charge_current == 0.0
        if any(v <= charge.discharge_cutoff_cell_voltage for v in lows):
            assert limits.discharge_current == 0.0

        if history:
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
