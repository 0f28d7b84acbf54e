"""Bank figures and the dbus-mqtt-battery payloads built from them."""

import json
import logging

import pytest

from dataclasses import dataclass, field
from typing import Dict, Optional

from extra200.derive import cell_id, summarize_bank
from extra200.model import Bank, Battery, CellRow, CellTable, DeviceInfo, PowerDetail, PowerRow, Statistics
from extra200.energy import EnergyTotals
from extra200.victron import VictronPublisher, bank_payload, last_word, unit_payload
from victron_schema import problems


@dataclass
class FixedLimits:
    charge_voltage: float = 51.75
    charge_current: float = 75.0
    discharge_current: float = 90.0
    allow_charge: bool = True
    allow_discharge: bool = True
    mode: str = "Bulk"
    charge_reason: str = "configured maximum"
    discharge_reason: str = "configured maximum"
    voltage_reason: str = "bulk"
    alarms: Dict[str, int] = field(default_factory=lambda: {"HighVoltage": 0, "LowVoltage": 0})
    battery_low_voltage: Optional[float] = 43.5
    units: Dict[int, "OwnLimits"] = field(default_factory=dict)


@dataclass
class OwnLimits:
    charge_current: float = 25.0
    discharge_current: float = 25.0
    blocks_charge: bool = False
    blocks_discharge: bool = False
    charge_reason: str = "configured maximum"
    discharge_reason: str = "configured maximum"
    alarms: Dict[str, int] = field(default_factory=lambda: {"HighCellVoltage": 0})


def _unit(address, volts, amps, soc, capacity, cell_low, cell_high, low_id=None, high_id=None, cells=None):
    battery = Battery(address)
    battery.row = PowerRow(
        address=address,
        present=True,
        voltage=volts,
        current=amps,
        temperature=25.0,
        cell_temp_low=20.0 + address,
        cell_temp_high=24.0 + address,
        cell_voltage_low=cell_low,
        cell_voltage_high=cell_high,
        cell_voltage_low_id=low_id,
        cell_voltage_high_id=high_id,
        soc=soc,
        base_state="Charge" if amps > 0 else "Dischg",
    )
    battery.detail = PowerDetail(address=address, total_capacity=capacity)
    battery.stats = Statistics(address=address, cycle_count=100 * address, soh=100.0 - address)
    if cells is not None:
        battery.cells = CellTable(address, tuple(CellRow(index=i, voltage=v, balancing=(i == 3)) for i, v in enumerate(cells)))
    return battery


def _bank():
    cells2 = [3.300] * 15
    cells2[6] = 3.290
    cells2[9] = 3.330
    units = {
        1: _unit(1, 49.8, 10.0, 80.0, 50.0, 3.310, 3.320, low_id=2, high_id=4),
        2: _unit(2, 49.6, -4.0, 40.0, 100.0, 3.290, 3.330, cells=cells2),  # ids come from the cell table
    }
    absent = Battery(3)
    absent.row = PowerRow(address=3, present=False)
    units[3] = absent
    return Bank(batteries=units, expected=(1, 2), poll_time=1000.0, complete=True)


def test_cell_ids_are_one_based():
    assert cell_id(2, 6) == "B2C7"
    assert cell_id(4, None) == "B4"


def test_bank_summary_aggregates_present_units():
    summary = summarize_bank(_bank())
    assert summary.units_online == 2
    assert summary.voltage == 49.7
    assert summary.current == 6.0
    assert summary.power == round(49.8 * 10.0 + 49.6 * -4.0, 1)
    # capacity-weighted: (80*50 + 40*100) / 150 = 53.3, not the plain mean 60
    assert summary.soc == 53.3
    assert summary.capacity == 150.0
    assert summary.remaining == 80.0
    assert summary.cell_voltage_min.id == "B2C7" and summary.cell_voltage_min.value == 3.290
    assert summary.cell_voltage_max.id == "B2C10" and summary.cell_voltage_max.value == 3.330
    assert summary.cell_voltage_delta == 0.04
    assert summary.cell_temp_min.value == 21.0 and summary.cell_temp_max.value == 26.0
    assert summary.balancing is True
    assert summary.cycle_count == 200 and summary.soh == 98.0


def test_unknown_values_stay_unknown():
    bank = _bank()
    bank.batteries[2].row = PowerRow(address=2, present=True, voltage=49.6, current=None, soc=40.0)
    summary = summarize_bank(bank)
    assert summary.current is None and summary.power is None
    assert bank_payload(summary, FixedLimits(), 15, 0) is None  # no Dc.Power: nothing to send


def test_bank_payload_exact():
    summary = summarize_bank(_bank())
    payload = bank_payload(summary, FixedLimits(), 15, 1)
    assert problems(payload) == []
    assert payload["Dc"] == {"Power": summary.power, "Voltage": 49.7, "Current": 6.0, "Temperature": 25.0}
    assert payload["Soc"] == 53.3
    assert payload["InstalledCapacity"] == 150.0 and payload["Capacity"] == 80.0
    assert payload["ConsumedAmphours"] == 70.0
    assert payload["Info"]["MaxChargeVoltage"] == 51.75
    assert payload["Info"]["MaxChargeCurrent"] == 75.0
    assert payload["Info"]["MaxDischargeCurrent"] == 90.0
    assert payload["Io"] == {"AllowToCharge": 1, "AllowToDischarge": 1}
    assert payload["System"]["MinVoltageCellId"] == "B2C7"
    assert payload["System"]["NrOfModulesOnline"] == 2
    assert payload["System"]["NrOfModulesOffline"] == 1
    assert payload["System"]["NrOfCellsPerBattery"] == 15
    assert payload["Balancing"] == 1
    assert "Voltages" not in payload  # cells of several units never go in one list


def test_unit_payload_has_cells_and_its_own_limits_and_alarms():
    summary = summarize_bank(_bank())
    unit2 = summary.units[1]
    limits = FixedLimits(
        charge_current=0.0,
        allow_charge=False,
        alarms={"HighCellVoltage": 2},
        units={1: OwnLimits(), 2: OwnLimits(charge_current=0.0, blocks_charge=True, alarms={"HighCellVoltage": 2})},
    )
    payload = unit_payload(unit2, limits, EnergyTotals(1.5, 0.25))
    assert problems(payload) == []
    assert payload["Voltages"]["Cell7"] == 3.29 and payload["Voltages"]["Sum"] == round(sum(unit2.cell_voltages), 3)
    assert payload["Voltages"]["Diff"] == 0.04
    assert payload["Balances"]["Cell4"] == 1 and payload["Balances"]["Cell1"] == 0
    assert payload["Info"]["MaxChargeCurrent"] == 0.0 and payload["Alarms"] == {"HighCellVoltage": 2}
    assert payload["System"]["NrOfModulesBlockingCharge"] == 1
    assert payload["History"]["ChargedEnergy"] == 1.5 and payload["History"]["DischargedEnergy"] == 0.25
    assert payload["Soc"] == 40.0
    # unit 1 carries its own clear alarms and full limit, not the bank's stop caused by unit 2
    unit1 = unit_payload(summary.units[0], limits)
    assert unit1["Alarms"] == {"HighCellVoltage": 0}
    assert unit1["Info"]["MaxChargeCurrent"] == 25.0 and unit1["Io"]["AllowToCharge"] == 1
    assert unit1["System"]["NrOfModulesBlockingCharge"] == 0
    # without its own limits a unit borrows nothing from the bank
    assert "Info" not in unit_payload(unit2, FixedLimits()) and "Alarms" not in unit_payload(unit2, FixedLimits())


def test_blocking_modules_are_counted_from_each_units_own_stop():
    limits = FixedLimits(
        charge_current=0.0, allow_charge=False, units={1: OwnLimits(), 2: OwnLimits(charge_current=0.0, blocks_charge=True)}
    )
    payload = bank_payload(summarize_bank(_bank()), limits, 15, 0)
    assert payload["Info"]["MaxChargeCurrent"] == 0.0
    assert payload["Io"]["AllowToCharge"] == 0
    assert payload["System"]["NrOfModulesBlockingCharge"] == 1
    assert payload["System"]["NrOfModulesBlockingDischarge"] == 0


def test_time_to_go_and_energy_on_the_bank():
    bank = _bank()
    bank.batteries[1].row = PowerRow(address=1, present=True, voltage=49.8, current=-20.0, soc=80.0)
    summary = summarize_bank(bank)
    payload = bank_payload(summary, FixedLimits(), 15, 0, EnergyTotals(12.3456, 7.0))
    assert problems(payload) == []
    assert summary.current == -24.0 and summary.remaining == 80.0
    assert payload["TimeToGo"] == 12000  # 80 Ah / 24 A = 3 h 20 min
    assert payload["History"] == {"ChargeCycles": 200, "ChargedEnergy": 12.346, "DischargedEnergy": 7.0}
    charging = bank_payload(summarize_bank(_bank()), FixedLimits(), 15, 0)
    assert charging["TimeToGo"] is None  # not discharging: no time to go, and the driver derives none


def test_a_value_that_becomes_unknown_is_sent_as_null():
    sent = []
    publisher = VictronPublisher(lambda t, p, w: sent.append((t, json.loads(p))) or True, "base", per_battery=True)
    bank = _bank()
    publisher.update(summarize_bank(bank), FixedLimits(), 0, 15, now=10.0)
    before = dict(sent)["base/battery_1"]
    assert before["System"]["MOSTemperature"] is None and before["Soh"] == 99.0
    bank.batteries[1].row = PowerRow(address=1, present=True, voltage=49.8, current=10.0, soc=80.0)
    bank.batteries[1].stats = None
    sent.clear()
    publisher.update(summarize_bank(bank), FixedLimits(), 0, 15, now=12.0)
    after = dict(sent)["base/battery_1"]
    assert problems(after) == []
    assert after["Soh"] is None and after["Dc"]["Temperature"] is None
    assert after["System"]["MinCellTemperature"] is None and after["System"]["MinTemperatureCellId"] is None
    assert after["Dc"]["Voltage"] == 49.8  # required paths are never null


def test_last_word_stops_charging_and_keeps_what_the_driver_requires():
    payload = bank_payload(summarize_bank(_bank()), FixedLimits(charge_voltage=52.4), 15, 0)
    word = last_word(payload, "no data", discharge_current=30.0)
    assert problems(word) == []
    assert word["Info"]["MaxChargeCurrent"] == 0.0
    assert word["Info"]["MaxChargeVoltage"] == 49.7  # the pack's voltage, below the CVL: solar stops too
    assert word["Info"]["MaxDischargeCurrent"] == 30.0 and word["Io"] == {"AllowToCharge": 0, "AllowToDischarge": 1}
    assert word["Alarms"]["BmsCable"] == 2
    assert word["Dc"] == {"Power": 0.0, "Voltage": 49.7} and word["Soc"] == payload["Soc"]
    assert word["System"]["NrOfModulesOnline"] == 0 and word["System"]["NrOfModulesBlockingCharge"] == 2
    assert last_word(payload, "gone")["Info"]["MaxDischargeCurrent"] == 90.0  # as last allowed


def test_publisher_says_the_last_word_once_on_every_topic_with_nulls():
    sent = []
    wills = []
    publisher = VictronPublisher(
        lambda t, p, w: sent.append((t, json.loads(p), w)) or True,
        "base",
        per_battery=True,
        set_will=lambda t, p: wills.append((t, json.loads(p))),
    )
    publisher.update(summarize_bank(_bank()), FixedLimits(), 0, 15, now=10.0)
    assert [t for t, _ in wills] == ["base/pylon"] and wills[0][1]["Info"]["MaxChargeCurrent"] == 0.0
    assert wills[0][1]["System"]["MinCellVoltage"] is None  # the will invalidates what it cannot know
    sent.clear()
    assert publisher.last_word("stale", now=10.2, discharge_current=0.0) == 3  # no 1 s wait for a last word
    assert all(w for _, _, w in sent)
    bank = dict((t, p) for t, p, _ in sent)["base/pylon"]
    assert problems(bank) == [] and bank["Info"]["MaxDischargeCurrent"] == 0.0
    assert bank["System"]["MinCellVoltage"] is None and bank["Dc"]["Current"] is None
    assert publisher.last_word("stale", now=11.0, discharge_current=0.0) == 0  # said already
    assert publisher.last_word("stale", now=11.0, discharge_current=5.0) == 1  # the bank's word changed


def test_a_last_word_right_behind_data_goes_out_again_in_the_next_second():
    """The driver updates D-Bus only when a message arrives in another whole second than its last update:
    a last word in the same second as the data before it would be lost for good (driver timeout 0)."""
    sent = []
    wall = [1000.30]
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        wall[0] += seconds

    publisher = VictronPublisher(
        lambda t, p, w: sent.append((wall[0], t, json.loads(p))) or True,
        "base",
        per_battery=False,
        wall_clock=lambda: wall[0],
        sleep=sleep,
    )
    publisher.update(summarize_bank(_bank()), FixedLimits(), 0, 15, now=10.0)
    wall[0] = 1000.70
    assert publisher.last_word("stopped", now=10.4) == 1
    assert publisher.repeat_last_word() == 1
    assert slept == [pytest.approx(1001.05 - 1000.70)]
    times = [(round(when, 2), p["Info"]["MaxChargeCurrent"]) for when, _, p in sent]
    assert times == [(1000.3, 75.0), (1000.7, 0.0), (1001.05, 0.0)]
    assert int(sent[-1][0]) != int(sent[0][0])  # the repeat lands in another second than the data
    # a word long after the last data is not repeated, and nothing is waited for
    sent.clear()
    slept.clear()
    publisher.update(summarize_bank(_bank()), FixedLimits(), 0, 15, now=20.0)
    wall[0] += 5.0
    assert publisher.last_word("stale", now=25.0) == 1
    assert publisher.repeat_last_word() == 0 and slept == []


def test_publisher_sends_at_most_once_a_second_per_topic():
    sent = []
    publisher = VictronPublisher(lambda t, p, w: sent.append(t) or True, "base", per_battery=True)
    summary = summarize_bank(_bank())
    assert publisher.update(summary, FixedLimits(), 0, 15, now=10.0) == 3
    assert publisher.update(summary, FixedLimits(), 0, 15, now=10.5) == 0
    assert publisher.update(summary, FixedLimits(), 0, 15, now=11.0) == 3
    assert sent[:3] == ["base/pylon", "base/battery_1", "base/battery_2"]


def test_checker_catches_what_the_driver_rejects():
    """The schema checker itself must be able to fail."""
    assert problems({"Dc": {"Power": 1.0}, "Soc": 5}) == ["Dc.Power and Dc.Voltage are required"]
    assert problems({"Dc": {"Power": 1.0, "Voltage": 50.0}, "Soc": 5, "Io": {"AllowToCharge": True}})
    assert problems({"Dc": {"Power": 1.0, "Voltage": "50"}, "Soc": 5})
    assert problems({"Dc": {"Power": 1.0, "Voltage": 50.0}, "Soc": None})
    assert problems({"Dc": {"Power": 1.0, "Voltage": 50.0}, "Soc": 5, "Voltages": {"Cell25": 3.3}})
    assert problems({"Dc": {"Power": 1.0, "Voltage": 50.0}, "Soc": 5, "Info": {"MaxChargeVoltage": None}})


def test_info_specification_gives_capacity_when_pwr_detail_is_missing():
    battery = Battery(1)
    battery.row = PowerRow(address=1, present=True, voltage=50.0, current=1.0, soc=50.0)
    battery.info = DeviceInfo(address=1, nominal_capacity=74.0)
    summary = summarize_bank(Bank(batteries={1: battery}))
    assert summary.capacity == 74.0 and summary.remaining == 37.0


def test_a_bank_that_cannot_be_published_is_logged_once_per_episode(caplog):
    publisher = VictronPublisher(lambda t, p, w: True, "base", per_battery=False)
    unknown = _bank()
    unknown.batteries[2].row = PowerRow(address=2, present=True, voltage=49.6, current=None, soc=40.0)
    with caplog.at_level(logging.INFO, logger="extra200.victron"):
        publisher.update(summarize_bank(unknown), FixedLimits(), 0, 15, now=10.0)
        publisher.update(summarize_bank(unknown), FixedLimits(), 0, 15, now=12.0)
        assert publisher.update(summarize_bank(_bank()), FixedLimits(), 0, 15, now=14.0) == 1  # published: the episode ends
        publisher.update(summarize_bank(unknown), FixedLimits(), 0, 15, now=16.0)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "extra200.victron"]
    assert lines == [("WARNING", "Victron: bank voltage, power or SoC unknown; not publishing base/pylon")] * 2
