"""Home Assistant discovery through the real daemon, for every shipped simulator scenario, via a real broker.

Every retained discovery config and every state the daemon publishes is
checked with the rules of ``test_homeassistant`` (from the shared Home
Assistant notes), unique ids are unique across the bank, and the states
carry the simulated bank's values.
"""

import json
import time

import pytest

from daemon_helpers import DaemonProcess, write_config
from mqtt_helpers import Recorder
from test_homeassistant import discovery_problems, state_problems

SCENARIOS = {
    # scenario: (config sections, units present)
    "us2000c-3": ({}, 3),
    "us3000c-16": ({}, 16),
    "pytes-16cell": ({"battery": {"num_cells": 16, "max_charge_voltage": 55.2}}, 2),
    "alarms-absent": ({}, 4),
    "extra2000": ({"serial": {"baud": 19200, "login_debug": True}, "battery": {"addresses": [1, 2]}}, 2),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_discovery_and_states_for_a_shipped_scenario(scenario, tmp_path, broker):
    sections, units = SCENARIOS[scenario]
    base = "ha-%s" % scenario
    prefix = "hadisc-%s" % scenario
    config = write_config(
        str(tmp_path), broker.port, base, homeassistant={"discovery_prefix": prefix}, cells={"level": "medium"}, **sections
    )
    recorder = Recorder(broker.port, ("%s/#" % base, "%s/#" % prefix))
    daemon = DaemonProcess(config, "pylonsim://?scenario=%s&drift=0" % scenario).start()
    try:
        devices = units + 1  # one per battery and the bank
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = {m[1] for m in recorder.messages if m[1].startswith(base + "/homeassistant/") and m[1].endswith("/state")}
            if len(states) >= devices:
                break
            time.sleep(0.5)
        assert len(states) == devices, "states for %s, log:\n%s" % (sorted(states), daemon.log())
        # the first states go out with the pwr table; the details (events, cells) of every unit follow
        # within a few polls: let one full round pass before looking
        time.sleep(6.0)
    finally:
        daemon.kill()
        recorder.close()

    configs = {m[1]: m[2] for m in recorder.messages if m[1].startswith(prefix + "/")}
    assert len(configs) == devices
    seen_ids = {}
    problems = []
    for topic, payload in configs.items():
        problems += discovery_problems(topic, payload, prefix, base + "/status", seen_ids)
    assert problems == []
    # the configs are retained: a client subscribing now (like a restarted Home Assistant) gets them all
    late = Recorder(broker.port, ("%s/#" % prefix,))
    try:
        deadline = time.monotonic() + 10
        while late.count() < devices and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {m[1] for m in late.messages if m[3]} == set(configs)
    finally:
        late.close()

    # every state matches its device's config; the last state of each device is checked
    by_state_topic = {}
    for payload in configs.values():
        document = json.loads(payload)
        by_state_topic[document.get("stat_t") or document.get("state_topic")] = document
    last_state = {}
    for _, topic, payload, _ in recorder.messages:
        if topic in by_state_topic:
            last_state[topic] = json.loads(payload)
    assert set(last_state) == set(by_state_topic)
    for topic, state in last_state.items():
        assert state_problems(by_state_topic[topic], state) == [], topic

    # the bank's voltage in Home Assistant is the one Victron gets
    bank_state = last_state[base + "/homeassistant/bank/state"]
    victron = [json.loads(m[2]) for m in recorder.messages if m[1] == base + "/pylon"]
    assert victron and bank_state["voltage"] == pytest.approx(victron[-1]["Dc"]["Voltage"], abs=0.01)
    if scenario == "alarms-absent":
        # the scenario's alarms reach Home Assistant as binary sensors, each named after its column
        two = last_state[base + "/homeassistant/battery_2/state"]
        assert two["alarm"] == "ON" and two["alarm_voltage"] == "ON" and two["alarm_cell_voltage"] == "ON"
        assert "Cell voltage high" in two["alarm_attributes"]["active"]
        three = last_state[base + "/homeassistant/battery_3/state"]
        assert three["alarm_temperature"] == "ON" and three["alarm_system"] == "ON"
        assert last_state[base + "/homeassistant/battery_1/state"]["alarm"] == "OFF"
        # events are warnings and worse: a normal unit's "base state Dischg" is no event
        assert last_state[base + "/homeassistant/battery_1/state"]["events"] == "No events"
        five = last_state[base + "/homeassistant/battery_5/state"]
        assert five["events"].startswith("system error (SysError) and ")  # too long for a state: the first, a count
        assert "system error (SysError)" in five["events_attributes"]["events"]
