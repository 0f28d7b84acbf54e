"""The daemon end to end: simulator on a real pseudo-terminal at 115200 baud, real Mosquitto, a subscriber.

Every published Victron payload is checked against the driver's schema and
against the simulated bank's values (drift off, so they are exact).
"""

import json
import os
import time

import pytest

from daemon_helpers import ROOT, DaemonProcess, write_config
from extra200.simulator import PtySimulator
from mqtt_helpers import Recorder
from victron_schema import problems


def expected_bank(sim):
    units = [u for u in sim.bank.snapshots() if u.present]
    volts = [u.voltage_mv / 1000.0 for u in units]
    capacity = sum(u.capacity_mah for u in units)
    cells = [(mv / 1000.0, "B%dC%d" % (u.address, i + 1)) for u in units for i, mv in enumerate(u.cells_mv)]
    return {
        "units": len(units),
        "voltage": round(sum(volts) / len(volts), 3),
        "current": round(sum(u.current_ma for u in units) / 1000.0, 3),
        "soc": round(sum(u.soc * u.capacity_mah for u in units) / capacity, 1),
        "capacity": round(capacity / 1000.0, 2),
        "min_cell": min(cells)[0],
        "max_cell": max(cells)[0],
        "min_ids": {cid for v, cid in cells if v == min(cells)[0]},
        "max_ids": {cid for v, cid in cells if v == max(cells)[0]},
        "per_unit": {u.address: u for u in units},
    }


@pytest.fixture
def simulator():
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    yield sim
    sim.stop()


def _bank_messages(recorder, topic):
    return [json.loads(p) for p in recorder.on_topic(topic)]


def is_last_word(payload):
    return payload.get("Info", {}).get("ChargeMode") == "Charging stopped (no data)"


def test_daemon_publishes_correct_victron_json(tmp_path, broker, simulator):
    base = "e2e1"
    recorder = Recorder(broker.port, ("%s/#" % base,))
    config = write_config(str(tmp_path), broker.port, base)
    daemon = DaemonProcess(config, simulator.path).start()
    try:
        assert recorder.wait_for(lambda t, p: t == base + "/pylon", timeout=30), daemon.log()
        deadline = time.monotonic() + 30
        while len(recorder.on_topic(base + "/pylon")) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)  # a few more polls
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    expected = expected_bank(simulator)
    bank_messages = _bank_messages(recorder, base + "/pylon")
    # the stop ends with the last word: charging stopped, no higher than the pack's voltage (sent again a
    # second later when it followed data within the second, which the driver could miss)
    words = [m for m in bank_messages if is_last_word(m)]
    assert 1 <= len(words) <= 2 and bank_messages[-len(words) :] == words
    assert all(w == words[0] for w in words)
    *bank_messages, stop = bank_messages[: len(bank_messages) - len(words) + 1]
    assert is_last_word(stop) and stop["Info"]["MaxChargeCurrent"] == 0 and problems(stop) == []
    assert stop["Info"]["MaxChargeVoltage"] <= expected["voltage"] and stop["Alarms"]["BmsCable"] == 2
    assert len(bank_messages) >= 3
    # the first message goes out with the pwr table; the capacity (pwr N) follows at once
    assert bank_messages[-1]["InstalledCapacity"] == expected["capacity"]
    for payload in bank_messages:
        assert problems(payload) == [] and not is_last_word(payload), [
            (m["Info"]["ChargeMode"], m["Info"]["ChargeLimitation"]) for m in bank_messages
        ]
        assert payload["Dc"]["Voltage"] == expected["voltage"]
        assert payload["Dc"]["Current"] == expected["current"]
        assert payload["Soc"] == round(payload["Soc"], 1) and abs(payload["Soc"] - expected["soc"]) < 5
        assert payload["InstalledCapacity"] in (None, expected["capacity"])
        assert payload["System"]["NrOfModulesOnline"] == expected["units"]
        assert payload["System"]["MinCellVoltage"] == expected["min_cell"]
        assert payload["System"]["MaxCellVoltage"] == expected["max_cell"]
        # before the cell tables are read, only the unit of an extreme is known ("B1")
        for key, ids in (("MinVoltageCellId", expected["min_ids"]), ("MaxVoltageCellId", expected["max_ids"])):
            where = payload["System"][key]
            assert where in ids or any(i.startswith(where + "C") for i in ids), (key, where)
        assert payload["Info"]["MaxChargeVoltage"] <= 52.5
        assert 0 <= payload["Info"]["MaxChargeCurrent"] <= 25.0 * expected["units"]
    # one topic per battery, with its own values and its cells
    for address, unit in expected["per_unit"].items():
        messages = _bank_messages(recorder, "%s/battery_%d" % (base, address))
        assert messages, "no message for battery %d" % address
        data = [m for m in messages if not is_last_word(m)]
        payload = data[-1]  # the last word (once, or twice a second apart) follows it
        assert is_last_word(messages[-1]) and messages[len(data) - len(messages) - 1] is payload
        assert problems(payload) == []
        assert payload["Dc"]["Voltage"] == unit.voltage_mv / 1000.0
        assert payload["Soc"] == unit.soc
        assert [payload["Voltages"]["Cell%d" % (i + 1)] for i in range(len(unit.cells_mv))] == [
            mv / 1000.0 for mv in unit.cells_mv
        ]
    # not retained, at most one a second per topic (data; the last word goes out at once)
    bank_records = [m for m in recorder.messages if m[1] == base + "/pylon" and not is_last_word(json.loads(m[2]))]
    assert not any(m[3] for m in bank_records)
    gaps = [b[0] - a[0] for a, b in zip(bank_records, bank_records[1:])]
    assert all(gap >= 0.9 for gap in gaps), gaps
    # availability: online while running, offline after the stop
    status = recorder.on_topic(base + "/status")
    assert b"online" in status and status[-1] == b"offline"
    recorder.close()


def test_broker_restart_during_a_run(tmp_path, own_broker, simulator):
    base = "e2e2"
    config = write_config(str(tmp_path), own_broker.port, base)
    daemon = DaemonProcess(config, simulator.path).start()
    recorder = Recorder(own_broker.port, ("%s/#" % base,))
    try:
        assert recorder.wait_for(lambda t, p: t == base + "/pylon", timeout=30), daemon.log()
        recorder.close()
        own_broker.stop()
        assert daemon.wait_log("lost the connection", timeout=15), daemon.log()
        simulator.bank.set_soc(1, 55)  # changes while the broker is away are still polled
        time.sleep(4)
        assert daemon.alive
        own_broker.start()
        recorder = Recorder(own_broker.port, ("%s/#" % base,))
        message = recorder.wait_for(lambda t, p: t == base + "/battery_1" and json.loads(p)["Soc"] == 55, timeout=60)
        assert message is not None, daemon.log()
        assert daemon.count("lost the connection") == 1  # logged once, not every poll
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        recorder.close()


def test_stale_data_pauses_the_bank_topic_and_marks_offline(tmp_path, broker, simulator):
    base = "e2e3"
    recorder = Recorder(broker.port, ("%s/#" % base,))
    config = write_config(str(tmp_path), broker.port, base)
    daemon = DaemonProcess(config, simulator.path).start()
    try:
        assert recorder.wait_for(lambda t, p: t == base + "/status" and p == b"online", timeout=30), daemon.log()
        silenced = recorder.count()
        simulator.bank.set_silent(True)
        assert recorder.wait_for(lambda t, p: t == base + "/status" and p == b"offline", timeout=30, after=silenced), daemon.log()
        silent_at = recorder.count()
        words = [json.loads(m[2]) for m in recorder.messages[silenced:silent_at] if m[1] == base + "/pylon"]
        assert words and all(is_last_word(w) for w in words[-1:]), words  # the GX is told to stop charging
        assert words[-1]["Info"]["MaxChargeCurrent"] == 0
        time.sleep(3)
        later = [json.loads(m[2]) for m in recorder.messages[silent_at:] if m[1] == base + "/pylon"]
        assert all(is_last_word(w) for w in later)  # nothing old re-published while stale
        simulator.bank.set_silent(False)
        after = recorder.count()
        assert recorder.wait_for(lambda t, p: t == base + "/status" and p == b"online", timeout=40, after=after), daemon.log()
        assert recorder.wait_for(lambda t, p: t == base + "/pylon", timeout=10, after=after)
        assert daemon.count("marking the bank offline") == 1
    finally:
        daemon.kill()
        recorder.close()


def test_once_prints_the_payloads_and_exit_status(tmp_path, simulator):
    import subprocess
    import sys
    from daemon_helpers import ENTRY

    proc = subprocess.run([sys.executable, ENTRY, "--port", simulator.path, "--once"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"bank", "batteries"}
    assert problems(result["bank"]) == []
    assert len(result["batteries"]) == 3
    # an expected unit that is absent makes --once fail
    config = write_config(str(tmp_path), 1, "x", battery={"addresses": [1, 2, 3, 4]})
    proc = subprocess.run(
        [sys.executable, ENTRY, "--config", config, "--port", simulator.path, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "configured battery 4 is absent" in proc.stderr


def test_unreachable_port_is_named(tmp_path):
    import subprocess
    import sys
    from daemon_helpers import ENTRY

    proc = subprocess.run(
        [sys.executable, ENTRY, "--port", str(tmp_path / "ttyNOPE"), "--once"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "ttyNOPE" in proc.stderr


def test_extra2000_over_a_pty_at_19200_woken_by_the_1200_baud_frame(tmp_path):
    """The original program's battery: asleep console, 19200 baud, login debug, no pwr table."""
    import subprocess
    import sys
    from daemon_helpers import ENTRY

    sim = PtySimulator("extra2000", drift=False)
    sim.start()
    try:
        config = write_config(str(tmp_path), 1, "x", serial={"baud": 19200, "login_debug": True}, battery={"addresses": [1, 2]})
        proc = subprocess.run(
            [sys.executable, ENTRY, "--config", config, "--port", sim.path, "--once"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert "wake-up frame" in proc.stderr and "rejects 'pwr'" in proc.stderr
        result = json.loads(proc.stdout)
        expected = expected_bank(sim)
        bank = result["bank"]
        assert problems(bank) == []
        assert bank["Dc"]["Voltage"] == expected["voltage"]
        assert bank["Soc"] == expected["soc"]
        assert bank["System"]["MinCellVoltage"] == expected["min_cell"]
        assert bank["System"]["MaxCellVoltage"] == expected["max_cell"]
        # cell data came from bat N this poll, so charging is allowed (not the no-data safe state)
        assert bank["Info"]["MaxChargeCurrent"] > 0 and bank["Info"]["ChargeMode"] == "Bulk"
    finally:
        sim.stop()


@pytest.mark.parametrize("scenario", ["us2000c-3", "us3000c-16", "pytes-16cell", "alarms-absent"])
def test_shipped_scenarios_poll_to_valid_payloads(scenario, tmp_path):
    import subprocess
    import sys
    from daemon_helpers import ENTRY

    cells = 16 if scenario.startswith("pytes") else 15
    config = write_config(
        str(tmp_path), 1, "x", battery={"num_cells": cells, "max_charge_voltage": 55.2 if cells == 16 else 52.5}
    )
    proc = subprocess.run(
        [sys.executable, ENTRY, "--config", config, "--port", "pylonsim://?scenario=%s&drift=0" % scenario, "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert problems(result["bank"]) == []
    for payload in result["batteries"]:
        assert problems(payload) == []
    assert result["bank"]["Info"]["MaxChargeVoltage"] <= (55.2 if cells == 16 else 52.5)
    if scenario == "alarms-absent":
        # a high cell and a low unit: charge and discharge stopped, with the reasons
        assert result["bank"]["Info"]["MaxChargeCurrent"] == 0 and result["bank"]["Io"]["AllowToCharge"] == 0
        assert result["bank"]["System"]["NrOfModulesOnline"] == 4


def test_dry_run_never_touches_the_state_directory(tmp_path, simulator):
    """--dry-run prints the Victron messages and keeps its energy counters elsewhere."""
    config = write_config(str(tmp_path), 1, "dry")  # no broker is needed
    state = tmp_path / "state"
    daemon = DaemonProcess(config, simulator.path, "--dry-run").start()
    try:
        assert daemon.wait_log("polling", timeout=20), daemon.log()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "dry/pylon" not in (daemon.proc.stdout.readline() or ""):
            pass
        time.sleep(2.5)  # energy counted over a few polls
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    assert not (state / "energy.json").exists()
    assert not state.exists() or os.listdir(str(state)) == []


# -------------------------------------------- found on the console: baud, login, cells (no settings needed)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _with_values(text, changes):
    """A config file's text with some written values replaced, every other byte as the user wrote it."""
    for old, new in changes.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _once(config, port, state_dir, timeout=120):
    import subprocess
    import sys
    from daemon_helpers import ENTRY

    return subprocess.run(
        [sys.executable, ENTRY, "--config", str(config), "--port", port, "--state-dir", str(state_dir), "--once"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _remembered(state_dir):
    with open(str(state_dir / "console-baud.json")) as handle:
        return json.load(handle)


def test_original_program_config_on_an_extra2000_at_19200(tmp_path, broker):
    """The original program's file (no baud, no login key) on its battery: asleep, 19200 baud, login debug,
    no pwr table.  Only the broker, the port and the log path are changed; it polls and publishes."""
    sim = PtySimulator("extra2000", drift=False, link=str(tmp_path / "ttyUSB0"))
    sim.start()
    with open(os.path.join(FIXTURES, "config", "original-extra200tomqtt.yaml")) as handle:
        original = handle.read()
    config = tmp_path / "config.yaml"
    config.write_text(
        _with_values(
            original,
            {
                '"10.0.0.2"': '"127.0.0.1"',
                "port: 1883": "port: %d" % broker.port,
                '"/dev/ttyUSB0"': '"%s"' % sim.device,
                "/opt/extra200tomqtt/ramdisk": str(tmp_path / "log"),
            },
        )
    )
    recorder = Recorder(broker.port, ("victron-battery-middleware/#",))
    daemon = DaemonProcess(str(config), sim.device, "--state-dir", str(tmp_path / "state")).start()
    try:
        # the first message goes out before the cells are read: wait for one with them
        assert recorder.wait_for(
            lambda t, p: t == "victron-battery-middleware/pylon" and json.loads(p)["System"].get("MinCellVoltage") is not None,
            timeout=90,
        ), daemon.log()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        recorder.close()
        sim.stop()
    log = daemon.log()
    assert "the console answers at 19200 baud" in log and "logging in with 'login debug'" in log
    assert "rejects 'pwr'" in log  # no pwr table: pwr N per configured address
    assert _remembered(tmp_path / "state") == {"port": sim.device, "baud": 19200}
    expected = expected_bank(sim)
    bank = [json.loads(p) for p in recorder.on_topic("victron-battery-middleware/pylon") if not is_last_word(json.loads(p))][
        -1
    ]  # the last data message (the stop's last word follows it)
    assert problems(bank) == []
    assert bank["Dc"]["Voltage"] == expected["voltage"] and bank["Soc"] == expected["soc"]
    assert bank["System"]["NrOfModulesOnline"] == 2
    assert bank["System"]["MinCellVoltage"] == expected["min_cell"]
    # the original keys keep their meaning: its 51.0 V cap and 50 A per battery
    assert bank["Info"]["MaxChargeVoltage"] == 51.0
    assert 0 < bank["Info"]["MaxChargeCurrent"] <= 100.0


def test_pytes_16_cells_on_the_shipped_config_gets_16_cell_limits(tmp_path):
    """The shipped config.yaml, unchanged (only --port): a 16-cell Pytes bank charges to 16 x 3.45 V."""
    sim = PtySimulator("pytes-16cell", drift=False)
    sim.start()
    try:
        proc = _once(os.path.join(ROOT, "config.yaml"), sim.path, tmp_path / "state")
    finally:
        sim.stop()
    assert proc.returncode == 0, proc.stderr
    bank = json.loads(proc.stdout)["bank"]
    assert problems(bank) == []
    assert bank["Dc"]["Voltage"] > 52.8  # above any 15-cell limit
    assert bank["Info"]["MaxChargeVoltage"] == 55.2
    assert bank["Info"]["BatteryLowVoltage"] == 46.4
    assert bank["Info"]["MaxChargeCurrent"] > 0 and bank["Io"]["AllowToCharge"] == 1
    assert bank["Alarms"]["HighVoltage"] == 0
    assert bank["System"]["NrOfCellsPerBattery"] == 16
    assert "num_cells" not in proc.stderr  # nothing to complain about


def test_a_mixed_15_and_16_cell_bank(tmp_path):
    """Unit 2 has 16 cells, units 1 and 3 have 15: each unit's own cells; the bank charges to the 15-cell limit."""
    import yaml

    scenario = tmp_path / "mixed.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "name": "US2000C x2 + Pytes",
                "firmware": "us2000c-b67",
                "units": 3,
                "clock": "2025-06-01 12:00:00",
                "defaults": {
                    "capacity": 50,
                    "current": 2.0,
                    "soc": 60,
                    "cell_voltage": 3.33,
                    "max_charge_current": 90,
                    "max_discharge_current": 90,
                },
                "unit": {2: {"cells": 16, "capacity": 100}},
            }
        )
    )
    sim = PtySimulator(str(scenario), drift=False)
    sim.start()
    try:
        config = write_config(str(tmp_path), 1, "x")  # the defaults: baud, cells and ceiling auto
        proc = _once(config, sim.path, tmp_path / "state")
    finally:
        sim.stop()
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    bank = result["bank"]
    assert problems(bank) == []
    assert bank["Info"]["MaxChargeVoltage"] == 51.75  # 15 x 3.45: the lower count wins in a parallel bank
    assert bank["Info"]["BatteryLowVoltage"] == 46.4  # 16 x 2.90: the higher cut-off
    assert bank["Info"]["MaxChargeCurrent"] > 0
    assert bank["Alarms"]["HighVoltage"] == 0 and bank["Alarms"]["LowVoltage"] == 0
    assert [len([k for k in b["Voltages"] if k.startswith("Cell")]) for b in result["batteries"]] == [15, 16, 15]


def test_a_console_whose_baud_changes_between_two_runs(tmp_path):
    """Auto baud, remembered per port: found at 115200, then the console runs at 19200; then tried first."""
    link = str(tmp_path / "ttyUSB0")
    state = tmp_path / "state"
    config = write_config(str(tmp_path), 1, "x")
    first = PtySimulator("us2000c-3", drift=False, link=link)
    first.start()
    try:
        run1 = _once(config, link, state)
    finally:
        first.stop()
    assert run1.returncode == 0, run1.stderr
    assert _remembered(state) == {"port": link, "baud": 115200}

    second = PtySimulator("us2000c-3", drift=False, link=link, console_baud=19200)
    second.start()
    try:
        run2 = _once(config, link, state)
        run3 = _once(config, link, state)
    finally:
        second.stop()
    assert run2.returncode == 0, run2.stderr
    assert "the console answers at 19200 baud" in run2.stderr
    assert json.loads(run2.stdout)["bank"]["Dc"]["Voltage"] == expected_bank(second)["voltage"]
    assert _remembered(state) == {"port": link, "baud": 19200}
    assert run3.returncode == 0, run3.stderr
    assert "at 19200 baud" in run3.stderr and "answers at" not in run3.stderr  # the remembered baud, at once


def test_recovery_detects_the_baud_again_after_unplug_and_console_reboot(tmp_path, broker):
    base = "e2ebaud"
    link = str(tmp_path / "ttyUSB0")
    sim = PtySimulator("us2000c-3", drift=False, link=link)
    sim.start()
    recorder = Recorder(broker.port, ("%s/#" % base,))
    config = write_config(str(tmp_path), broker.port, base)
    daemon = DaemonProcess(config, link).start()
    try:
        assert recorder.wait_for(lambda t, p: t == base + "/pylon", timeout=30), daemon.log()
        sim.unplug()
        sim.console.restart_at(57600)  # the battery comes back at another baud
        time.sleep(2)
        sim.replug()
        # data again (not the last word said while the battery was away)
        assert recorder.wait_for(
            lambda t, p: t == base + "/pylon" and not is_last_word(json.loads(p)), timeout=90, after=recorder.count()
        ), daemon.log()
        assert daemon.wait_log("the console answers at 57600 baud", timeout=1), daemon.log()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        recorder.close()
        sim.stop()
    assert _remembered(tmp_path / "state") == {"port": link, "baud": 57600}


def test_a_high_voltage_stack_is_refused_not_published_as_48_v(tmp_path):
    """Force H (a 400 V stack): the daemon says it is not supported and publishes nothing."""
    fixtures = os.path.join(FIXTURES, "console")
    replay = tmp_path / "replay"
    replay.mkdir()
    for name, command in (("pwr_force_hv.txt", "pwr"), ("bat_force_hv.txt", "bat_1")):
        with open(os.path.join(fixtures, name)) as handle:
            lines = handle.read().split("\n")
        start = lines.index("@") + 1
        end = next(i for i, line in enumerate(lines) if line.startswith("Command completed"))
        (replay / (command + ".txt")).write_text("\n".join(lines[start:end]) + "\n")
    config = write_config(str(tmp_path), 1, "x", serial={"baud": 115200})
    proc = _once(config, "pylonsim://?replay=%s" % replay, tmp_path / "state")
    assert proc.returncode == 1, proc.stdout
    assert "high-voltage stack" in proc.stderr and "not supported" in proc.stderr
    assert '"MaxChargeVoltage"' not in proc.stdout
