"""What the GX would show: the daemon's messages through the real venus-os_dbus-mqtt-battery driver.

The driver runs unmodified off Venus OS (``victron_driver``), subscribed to
the daemon's bank topic (and, for the per-battery test, to two unit topics);
the test reads its D-Bus service back, as Venus's systemcalc would.  The
daemon polls the simulator over a real pseudo-terminal.
"""

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import victron_driver
from daemon_helpers import ENTRY, DaemonProcess, write_config
from extra200.simulator import PtySimulator

pytestmark = pytest.mark.skipif(victron_driver.available() is not None, reason=victron_driver.available() or "")

STALE_AFTER = 6.0  # write_config's serial.stale_after
KEEPALIVE = 5  # write_config's mqtt.keepalive


@pytest.fixture
def simulator() -> Iterator[PtySimulator]:
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    yield sim
    sim.stop()


def _driver(tmp_path: Any, name: str, topic: str, timeout: int = 0, instance: int = 100) -> victron_driver.Driver:
    return victron_driver.Driver(str(tmp_path / name), topic, timeout=timeout, instance=instance)


def dbus_paths(payload: Dict[str, Any]) -> Dict[str, Any]:
    """A payload's leaves as the driver's D-Bus paths (``Dc.Power`` -> ``/Dc/0/Power``)."""
    paths: Dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            for inner, leaf in value.items():
                paths["/Dc/0/%s" % inner if key == "Dc" else "/%s/%s" % (key, inner)] = leaf
        else:
            paths["/" + key] = value
    return paths


def differences(expected: Dict[str, Any], shown: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    found = []
    for path, value in expected.items():
        got = shown.get(path, "<no such path>")
        same = got == value or (isinstance(value, float) and isinstance(got, (int, float)) and abs(got - value) < 1e-6)
        if not same:
            found.append((path, value, got))
    return found


def _once(config: str, port: str) -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, ENTRY, "--config", config, "--port", port, "--once"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# Figures that count time (energy) and the texts of a controller that has run longer than --once.
_TIME_DEPENDENT = {"/History/ChargedEnergy", "/History/DischargedEnergy"}


def test_every_bank_path_equals_once_and_unknown_goes_invalid(tmp_path: Any, simulator: PtySimulator) -> None:
    driver = _driver(tmp_path, "bank", "gx1/pylon").start()
    try:
        config = write_config(str(tmp_path), driver.port, "gx1")
        once = _once(config, simulator.path)
        expected = {p: v for p, v in dbus_paths(once["bank"]).items() if p not in _TIME_DEPENDENT}
        assert expected["/System/MOSTemperature"] is not None
        daemon = DaemonProcess(config, simulator.path).start()
        try:
            shown = driver.wait(lambda values: not differences(expected, values), timeout=40)
            last = driver.values() or {}
            assert shown is not None, (differences(expected, last), daemon.log()[-3000:], driver.log())
            # a reading that vanishes is invalidated on D-Bus, never left at its old number
            for address in (1, 2, 3):
                simulator.bank.set_mos_temperature(address, None)
            gone = driver.wait(lambda values: values.get("/System/MOSTemperature", 0) is None, timeout=20)
            assert gone is not None, (driver.values(), daemon.log()[-2000:])
            assert gone["/Soc"] == expected["/Soc"] and gone["/Info/MaxChargeCurrent"] is not None
            assert daemon.terminate() == 0
        finally:
            daemon.kill()
    finally:
        driver.stop()


def test_per_battery_services_hold_only_their_own_alarms(tmp_path: Any, simulator: PtySimulator) -> None:
    bank = _driver(tmp_path, "bank", "gx2/pylon").start()
    units = {
        1: _driver(tmp_path, "unit1", "gx2/battery_1", instance=101),
        2: _driver(tmp_path, "unit2", "gx2/battery_2", instance=102),
    }
    try:
        for unit in units.values():
            unit.start()
            unit.listen_on(bank.port)  # one broker, one service per topic
        daemon = DaemonProcess(write_config(str(tmp_path), bank.port, "gx2"), simulator.path).start()
        try:
            assert bank.wait(lambda v: v.get("/Info/MaxChargeCurrent") is not None, timeout=30), daemon.log()
            simulator.bank.set_cell_voltage(2, 4, 3.60)  # one cell of unit 2 runs high
            high = bank.wait(lambda v: (v.get("/Alarms/HighCellVoltage") or 0) > 0, timeout=30)
            assert high is not None, (bank.values(), daemon.log()[-3000:])
            assert high["/System/MaxVoltageCellId"] == "B2C5" and high["/System/NrOfModulesBlockingCharge"] <= 1
            two = units[2].wait(lambda v: (v.get("/Alarms/HighCellVoltage") or 0) > 0, timeout=20)
            assert two is not None, (units[2].values(), units[2].log())
            one = units[1].wait(lambda v: v.get("/Alarms/HighCellVoltage") == 0, timeout=20)
            assert one is not None, units[1].values()
            assert one["/System/NrOfModulesBlockingCharge"] == 0
            assert one["/Info/MaxChargeCurrent"] > 0  # unit 1's own limit: nothing of unit 1 stops charging
            assert one["/System/MaxVoltageCellId"].startswith("B1")
            assert daemon.terminate() == 0
        finally:
            daemon.kill()
    finally:
        for driver in [bank, *units.values()]:
            driver.stop()


def _stopped_charging(values: Dict[str, Any]) -> bool:
    return values.get("/Info/MaxChargeCurrent") == 0 and values.get("/Alarms/BmsCable") == 2


@pytest.mark.parametrize("driver_timeout", [0, 60])
@pytest.mark.parametrize("how", ["console silent", "SIGTERM", "kill -9"])
def test_the_gx_is_told_to_stop_charging(tmp_path: Any, simulator: PtySimulator, how: str, driver_timeout: int) -> None:
    driver = _driver(tmp_path, "bank", "gx3/pylon", timeout=driver_timeout).start()
    try:
        daemon = DaemonProcess(write_config(str(tmp_path), driver.port, "gx3"), simulator.path).start()
        try:
            running = driver.wait(lambda v: (v.get("/Info/MaxChargeCurrent") or 0) > 0, timeout=30)
            assert running is not None, (daemon.log(), driver.log())
            voltage = running["/Dc/0/Voltage"]
            assert daemon.wait_log("last will in place", timeout=10), daemon.log()  # the will carries data now
            started = time.monotonic()
            if how == "console silent":
                simulator.bank.set_silent(True)
                bound = STALE_AFTER + 5
            elif how == "SIGTERM":
                assert daemon.proc is not None
                daemon.proc.send_signal(signal.SIGTERM)
                bound = 2.0
            else:
                assert daemon.proc is not None
                os.kill(daemon.proc.pid, signal.SIGKILL)
                bound = 1.5 * KEEPALIVE
            stopped = driver.wait(_stopped_charging, timeout=bound + 10)
            took = time.monotonic() - started
            assert stopped is not None, (driver.values(), daemon.log()[-3000:], driver.log())
            assert took <= bound, "%s: D-Bus showed MaxChargeCurrent 0 only after %.1f s" % (how, took)
            # no charger may push the pack above where it was: the voltage stops solar chargers too
            assert stopped["/Info/MaxChargeVoltage"] <= voltage
            assert stopped["/System/MinCellVoltage"] is None  # nothing measured is claimed any longer
            if how == "SIGTERM":
                assert daemon.proc is not None and daemon.proc.wait(timeout=5) == 0
        finally:
            daemon.kill()
    finally:
        driver.stop()
