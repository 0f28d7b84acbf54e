"""Events: the catalogue of bits and status words, and the events log of a scenario that raises and clears alarms."""

import json
import os
import re
import time
from typing import Dict, List, Optional

import pytest

from extra200.events import (
    APPEARED,
    CLEARED,
    CatalogueError,
    Event,
    EventCatalogue,
    EventMonitor,
    cell_snapshot,
    default_log_path,
)
from extra200.model import Bank, Battery, CellRow, CellTable, PowerDetail, PowerRow

T0 = 1714564800.0


def unit(
    address: int,
    base: str = "Idle",
    volt: str = "Normal",
    power: int = 0,
    fault: int = 0,
    cell_states: Optional[Dict[int, str]] = None,
    cells: int = 15,
) -> Battery:
    """A present unit; ``cell_states`` maps 0-based cell indices to a ``Volt. State``."""
    row = PowerRow(
        address,
        True,
        voltage=52.0,
        current=0.0,
        base_state=base,
        voltage_state=volt,
        current_state="Normal",
        temperature_state="Normal",
        battery_voltage_state="Normal",
        battery_temperature_state="Normal",
        mos_temperature_state="-",
    )
    detail = PowerDetail(
        address,
        bat_events=0,
        power_events=power,
        system_fault=fault,
        coulomb_state="Normal",
        soh_state="Normal",
        heater_state="OFF",
    )
    table = CellTable(
        address,
        tuple(
            CellRow(
                index=i,
                voltage=round(3.3 + i / 1000.0, 3),
                temperature=22.0,
                base_state=base,
                voltage_state=(cell_states or {}).get(i, "Normal"),
                current_state="Normal",
                temperature_state="Normal",
            )
            for i in range(cells)
        ),
    )
    return Battery(address, row=row, detail=detail, cells=table)


def bank(*batteries: Battery, step: int = 0) -> Bank:
    return Bank(batteries={b.address: b for b in batteries}, poll_time=T0 + step * 5)


def absent(address: int) -> Battery:
    return Battery(address, row=PowerRow(address, False))


def silent(address: int) -> Battery:
    """A configured unit that did not answer this poll: nothing read."""
    return Battery(address)


# The scenario: each poll's bank.  Unit 1 is a 15-cell Pylontech, unit 2 a 16-cell Pytes.
SCENARIO = [
    # 1: normal operation; unit 2 charging and full (info events only)
    (unit(1), unit(2, base="Charge", power=0x2000 | 0x400000, cells=16)),
    # 2: unit 1 over-voltage: the pack state, the power event and cell 3 (console index 2)
    (
        unit(1, volt="High", power=0x1, cell_states={2: "High"}),
        unit(2, base="Charge", power=0x2000 | 0x400000, cells=16),
    ),
    # 3: the same again: nothing new
    (
        unit(1, volt="High", power=0x1, cell_states={2: "High"}),
        unit(2, base="Charge", power=0x2000 | 0x400000, cells=16),
    ),
    # 4: the states recover, the power event stays
    (unit(1, power=0x1), unit(2, base="Charge", power=0x2000 | 0x400000, cells=16)),
    # 5: the power event clears; a system fault and a bit nobody documented
    (unit(1, fault=0x20 | 0x4000), unit(2, base="Charge", power=0x2000 | 0x400000, cells=16)),
    # 6: unit 2 disappears from the pwr table
    (unit(1, fault=0x20 | 0x4000), absent(2)),
    # 7: unit 1 does not answer: its events are unknown, not cleared
    (silent(1), absent(2)),
    # 8: unit 2 is back, idle
    (unit(1, fault=0x20 | 0x4000), unit(2, cells=16)),
]

EXPECTED_WARNING_LINES = [
    "battery 1 WARNING appeared: voltage state High [status Volt.St=High]",
    "battery 1 WARNING appeared: Over-voltage alarm [power_events 0x1]",
    "battery 1 WARNING appeared: cell 3 voltage state High [cell Volt. State=High]",
    "battery 1 WARNING cleared: voltage state High [status Volt.St=High]",
    "battery 1 WARNING cleared: cell 3 voltage state High [cell Volt. State=High]",
    "battery 1 WARNING cleared: Over-voltage alarm [power_events 0x1]",
    "battery 1 WARNING appeared: Temperature sensor error [system_fault 0x20]",
    "battery 1 WARNING appeared: unknown bit 0x4000 [system_fault 0x4000]",
    "battery 2 WARNING appeared: unit absent [status Base.St=Absent]",
    "battery 2 WARNING cleared: unit absent [status Base.St=Absent]",
]

EXPECTED_COUNTS = {
    "cell:Volt. State=High": 1,
    "power_events:0x1": 1,
    "power_events:0x2000": 1,
    "power_events:0x400000": 1,
    "status:Base.St=Absent": 1,
    "status:Base.St=Charge": 1,
    "status:Base.St=Idle": 2,
    "status:Volt.St=High": 1,
    "system_fault:0x20": 1,
    "system_fault:0x4000": 1,
}

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def run(monitor: EventMonitor) -> List[list]:
    return [monitor.update(bank(*units, step=i), T0 + i * 5) for i, units in enumerate(SCENARIO)]


def change_lines(path: str) -> List[str]:
    """The events log's change lines without their timestamps (snapshot lines are indented)."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert all(STAMP.match(line) or line.startswith("    ") for line in lines)
    return [STAMP.sub("", line) for line in lines if STAMP.match(line)]


def test_scenario_logs_exactly_the_expected_lines_and_counts(tmp_path):
    path = str(tmp_path / "logs" / "battery_events.log")  # the directory is created
    monitor = EventMonitor(EventCatalogue.builtin(), path, level="warning", cell_snapshots=False)
    changes = run(monitor)
    monitor.close()
    with open(path, encoding="utf-8") as handle:
        raw = handle.read().splitlines()
    assert [STAMP.sub("", line) for line in raw] == EXPECTED_WARNING_LINES  # nothing else, no snapshots
    assert raw[0].startswith(time.strftime("%Y-%m-%d %H:%M:%S ", time.localtime(T0 + 5)))
    assert monitor.counts() == EXPECTED_COUNTS
    assert monitor.kind_counts() == {
        "bat_events": 0,
        "power_events": 3,
        "system_fault": 2,
        "status": 5,
        "cell": 1,
    }
    # Every change, at any level, is returned for the database and the outputs.
    summary = [[(c.address, c.change, c.event.type_key) for c in poll] for poll in changes]
    assert summary[0] == [
        (1, APPEARED, "status:Base.St=Idle"),
        (2, APPEARED, "status:Base.St=Charge"),
        (2, APPEARED, "power_events:0x2000"),
        (2, APPEARED, "power_events:0x400000"),
    ]
    assert summary[2] == [] and summary[6] == []  # persisting / unknown: no change
    assert summary[5] == [(2, CLEARED, "status:Base.St=Charge"), (2, APPEARED, "status:Base.St=Absent")]
    assert summary[7] == [
        (2, CLEARED, "status:Base.St=Absent"),
        (2, CLEARED, "power_events:0x2000"),
        (2, CLEARED, "power_events:0x400000"),
        (2, APPEARED, "status:Base.St=Idle"),
    ]
    active = monitor.active()
    assert [(e.level, e.type_key) for e in active[1]] == [
        ("warning", "system_fault:0x20"),
        ("warning", "system_fault:0x4000"),
        ("info", "status:Base.St=Idle"),
    ]
    assert [e.type_key for e in active[2]] == ["status:Base.St=Idle"]
    assert monitor.active_text(1) == "Temperature sensor error, unknown bit 0x4000"
    assert monitor.active_text(2) == ""


def test_info_level_logs_normal_operation_too(tmp_path):
    path = str(tmp_path / "events.log")
    monitor = EventMonitor(EventCatalogue.builtin(), path, level="info", cell_snapshots=False)
    run(monitor)
    monitor.close()
    lines = change_lines(path)
    assert lines[:4] == [
        "battery 1 INFO appeared: base state Idle [status Base.St=Idle]",
        "battery 2 INFO appeared: base state Charge [status Base.St=Charge]",
        "battery 2 INFO appeared: Full charge (COULFULL) [power_events 0x2000]",
        "battery 2 INFO appeared: Charging [power_events 0x400000]",
    ]
    assert [line for line in lines if "WARNING" in line] == EXPECTED_WARNING_LINES
    assert len(lines) == len(EXPECTED_WARNING_LINES) + 4 + 1 + 3  # first poll, Charge cleared, unit 2's return


def test_each_logged_change_is_followed_by_the_units_cells(tmp_path):
    path = str(tmp_path / "events.log")
    monitor = EventMonitor(EventCatalogue.builtin(), path, level="warning", cell_snapshots=True)
    monitor.update(bank(unit(1)), T0)
    monitor.update(bank(unit(1, power=0x1, cell_states={2: "High"})), T0 + 5)
    monitor.update(bank(unit(1, power=0x1, cell_states={2: "High"})), T0 + 10)  # persists: nothing
    monitor.close()
    with open(path, encoding="utf-8") as handle:
        lines = [STAMP.sub("", line) for line in handle.read().splitlines()]
    assert lines[:4] == [
        "battery 1 WARNING appeared: Over-voltage alarm [power_events 0x1]",
        "battery 1 WARNING appeared: cell 3 voltage state High [cell Volt. State=High]",
        "    bat 1 cells:  bat_events 0x0, power_events 0x1, system_fault 0x0",
        "    Cell  Volt V  Tempr C  Base  Volt.St  Curr.St  Temp.St",
    ]
    assert lines[4:7] == [
        "       1   3.300     22.0  Idle  Normal   Normal   Normal",
        "       2   3.301     22.0  Idle  Normal   Normal   Normal",
        "       3   3.302     22.0  Idle  High     Normal   Normal",
    ]
    assert len(lines) == 2 + 2 + 15  # one snapshot for the unit, not one per change


def test_snapshot_of_a_sixteen_cell_unit_and_of_a_unit_without_cells():
    text = cell_snapshot(unit(2, cells=16))
    assert text.splitlines()[-1] == "      16   3.315     22.0  Idle  Normal   Normal   Normal"
    assert len(text.splitlines()) == 2 + 16
    assert cell_snapshot(Battery(3, row=PowerRow(3, True))) == "    bat 3 cells:\n    (no cell data read yet)"


def test_events_log_rotates_by_size_and_count(tmp_path):
    path = str(tmp_path / "events.log")
    monitor = EventMonitor(EventCatalogue.builtin(), path, level="warning", max_bytes=1000, backups=2, cell_snapshots=False)
    for i in range(60):
        monitor.update(bank(unit(1, power=0x1 if i % 2 else 0)), T0 + i)
    monitor.close()
    names = sorted(os.listdir(str(tmp_path)))
    assert names == ["events.log", "events.log.1", "events.log.2"]
    assert all(os.path.getsize(str(tmp_path / n)) <= 1000 for n in names)


def test_bits_are_named_and_unknown_bits_kept():
    catalogue = EventCatalogue.builtin()
    assert catalogue.describe("power_events", 0x2001) == [
        Event("power_events", "0x1", "Over-voltage alarm", "warning"),
        Event("power_events", "0x2000", "Full charge (COULFULL)", "info"),
    ]
    assert catalogue.describe("bat_events", 0x10) == [Event("bat_events", "0x10", "unknown bit 0x10", "warning")]
    assert catalogue.describe("system_fault", 0x800 | 0x80000000) == [
        Event("system_fault", "0x800", "Discharge MOSFET failure", "warning"),
        Event("system_fault", "0x80000000", "unknown bit 0x80000000", "warning"),
    ]
    assert catalogue.describe("system_fault", 0) == []
    assert catalogue.describe("system_fault", None) == []
    with pytest.raises(ValueError):
        catalogue.describe("alarms", 1)


@pytest.mark.parametrize(
    "column, word, expected",
    [
        ("Base.St", "Charge", ("status", "Base.St=Charge", "base state Charge", "info")),
        ("Base.St", "Dischg", ("status", "Base.St=Dischg", "base state Dischg", "info")),
        ("Base.St", "SysError", ("status", "Base.St=SysError", "system error (SysError)", "warning")),
        ("Volt.St", "Low", ("status", "Volt.St=Low", "voltage state Low", "warning")),
        ("B.V.St", "High", ("status", "B.V.St=High", "battery voltage state High", "warning")),
        ("SysAlarm.St", "Alarm", ("status", "SysAlarm.St=Alarm", "system alarm state Alarm", "warning")),
        ("Coul. Status", "Full", ("status", "Coul. Status=Full", "fully charged (Coul. Status Full)", "info")),
        ("Soh. Status", "Abnormal", ("status", "Soh. Status=Abnormal", "SOH state Abnormal", "warning")),
        ("Volt.St", "Normal", None),
        ("M.T.St", "-", None),
        ("Heater Status", "OFF", None),
        ("Volt.St", None, None),
    ],
)
def test_status_words(column, word, expected):
    event = EventCatalogue.builtin().describe_state(column, word)
    assert (None if event is None else (event.kind, event.code, event.name, event.level)) == expected


def test_cell_states_including_columns_only_some_firmware_prints():
    catalogue = EventCatalogue.builtin()
    cell = CellRow(index=6, base_state="Charge", temperature_state="Low", extra={"DTemp. State": "High", "Note": "x"})
    battery = Battery(1, cells=CellTable(1, (cell,)))
    events = catalogue.battery_events(battery)["cells"]
    assert [(e.code, e.name, e.cell) for e in events] == [
        ("Temp. State=Low", "cell 7 temperature state Low", 7),
        ("DTemp. State=High", "cell 7 DTemp. State High", 7),
    ]


def test_overrides_from_yaml_and_json(tmp_path):
    path = tmp_path / "events.yaml"
    path.write_text(
        "bat_events:\n"
        "  0x10: {name: Cell over-voltage protection, level: warning}\n"
        "power_events:\n"
        "  0x40: info\n"
        "  '0x200000': ignore\n"
        "states:\n"
        "  Base.St=Balance: {name: balancing, level: info}\n"
        "  Low: info\n"
    )
    catalogue = EventCatalogue.builtin()
    catalogue.load_overrides(str(path))
    assert catalogue.describe("bat_events", 0x10) == [Event("bat_events", "0x10", "Cell over-voltage protection", "warning")]
    assert catalogue.describe("power_events", 0x40 | 0x200000) == [Event("power_events", "0x40", "Battery life alarm 1", "info")]
    assert catalogue.describe_state("Base.St", "Balance") == Event("status", "Base.St=Balance", "balancing", "info")
    assert catalogue.describe_state("Volt.St", "Low") == Event("status", "Volt.St=Low", "voltage state Low", "info")
    assert EventCatalogue.builtin().describe("bat_events", 0x10)[0].name == "unknown bit 0x10"  # builtin untouched

    as_json = tmp_path / "events.json"
    as_json.write_text(json.dumps({"system_fault": {"64": {"level": "info"}}, "states": {"Heater Status=ON": "ignore"}}))
    catalogue = EventCatalogue.builtin()
    catalogue.load_overrides(str(as_json))
    assert catalogue.describe("system_fault", 0x40) == [Event("system_fault", "0x40", "Voltage detection error", "info")]
    assert catalogue.describe_state("Heater Status", "ON") is None


def test_a_bad_overrides_file_names_every_problem(tmp_path):
    path = tmp_path / "events.yaml"
    path.write_text("alarms: {}\npower_events:\n  0x3: info\n  0x8: critical\n  0x10: {name: x, colour: red}\nstates: [Low]\n")
    with pytest.raises(CatalogueError) as caught:
        EventCatalogue.builtin().load_overrides(str(path))
    assert caught.value.problems == [
        "alarms: unknown section (known: bat_events, power_events, system_fault, states)",
        "power_events.3: must be a single bit such as 0x40 or 64",
        "power_events.8: level must be one of info, warning, ignore, got 'critical'",
        "power_events.16: unknown keys colour (known: name, level)",
        "states: must map entries to a level or {name, level}",
    ]
    with pytest.raises(CatalogueError):
        EventCatalogue.builtin().load_overrides(str(tmp_path / "missing.yaml"))


def test_default_events_log_path():
    assert default_log_path("/var/log/extra200tomqtt/current.log", "/var/lib/x") == "/var/log/extra200tomqtt/battery_events.log"
    assert default_log_path("", "/var/lib/extra200tomqtt") == "/var/lib/extra200tomqtt/battery_events.log"
