"""The real daemon across restarts and Home Assistant events: energy counters survive kill -9,
Home Assistant's birth message brings every config again, a battery gone is cleared."""

import json
import os
import time

import pytest

from daemon_helpers import DaemonProcess, write_config
from extra200.simulator import PtySimulator
from mqtt_helpers import Recorder


@pytest.fixture
def simulator():
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    yield sim
    sim.stop()


def _bank_counter(state_dir: str):
    with open(os.path.join(state_dir, "energy.json")) as handle:
        return json.load(handle)["counters"]["bank"]["charged_wh"]


def _wait_for_counter(state_dir: str, above: float, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = _bank_counter(state_dir)
            if value > above:
                return value
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError("the energy counter did not pass %s Wh" % above)


def test_energy_counters_survive_kill_9_without_reset_or_double_counting(tmp_path, simulator):
    simulator.bank.set_current("all", 20.0)  # charging: about 3 x 50 V x 20 A = 3 kW
    power = sum(u.voltage_mv / 1000.0 * 20.0 for u in simulator.bank.snapshots() if u.present)
    config = write_config(str(tmp_path), 1, "en", mqtt={"active": False}, state_save_interval=1)
    state_dir = str(tmp_path / "state")
    started = time.time()
    first = DaemonProcess(config, simulator.path).start()
    try:
        before_kill = _wait_for_counter(state_dir, 1.0)
        first.proc.kill()  # no clean stop: no final save
        first.proc.wait()
    finally:
        first.kill()
    saved = _bank_counter(state_dir)
    assert saved >= before_kill
    time.sleep(2)  # down for a while: the gap is counted once on restart (< 5 min)
    second = DaemonProcess(config, simulator.path).start()
    try:
        _wait_for_counter(state_dir, saved + 1.0)
        assert second.terminate() == 0
    finally:
        second.kill()
    final = _bank_counter(state_dir)
    elapsed_hours = (time.time() - started) / 3600.0
    assert final > saved  # not reset: it went on from the saved value
    # not double counted: never more than the energy that actually flowed since the first start
    assert final <= power * elapsed_hours * 1.02 + 0.5


def _device_topics(recorder, prefix, since=0, empty=False):
    return {m[1] for m in recorder.messages[since:] if m[1].startswith(prefix + "/device/") and (m[2] == b"") == empty}


def _wait_devices(recorder, prefix, count, since=0, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(_device_topics(recorder, prefix, since)) < count:
        time.sleep(0.2)
    return _device_topics(recorder, prefix, since)


def test_home_assistant_birth_and_a_battery_removed(tmp_path, broker, simulator):
    base, prefix = "rs", "hars"
    config = write_config(
        str(tmp_path), broker.port, base, homeassistant={"discovery_prefix": prefix}, battery={"addresses": [1, 2, 3]}
    )
    recorder = Recorder(broker.port, ("%s/#" % prefix, "%s/#" % base))
    daemon = DaemonProcess(config, simulator.path).start()
    try:
        topics = _wait_devices(recorder, prefix, 4)
        assert len(topics) == 4, daemon.log()
        # Home Assistant restarts and says "online": every config comes again
        mark = recorder.count()
        recorder.client.publish("%s/status" % prefix, "online")
        assert _wait_devices(recorder, prefix, 4, since=mark, timeout=20) == topics
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    battery3 = {t for t in topics if json.loads(recorder.on_topic(t)[0])["dev"]["name"].endswith(" 3")}
    assert len(battery3) == 1, [json.loads(recorder.on_topic(t)[0])["dev"]["name"] for t in topics]

    # battery 3 leaves the bank and the configuration; the next start clears its device, only that one
    simulator.bank.set_absent(3)
    config = write_config(
        str(tmp_path), broker.port, base, homeassistant={"discovery_prefix": prefix}, battery={"addresses": [1, 2]}
    )
    mark = recorder.count()
    daemon = DaemonProcess(config, simulator.path).start()
    try:
        cleared = recorder.wait_for(lambda t, p: t.startswith(prefix + "/device/") and p == b"", timeout=40, after=mark)
        assert cleared is not None, daemon.log()
        time.sleep(2)
        assert _device_topics(recorder, prefix, mark, empty=True) == battery3
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        recorder.close()
