"""The fault suite: every fault a real installation produces, against the real daemon.

Each fault runs the daemon (``extra200tomqtt.py`` in a subprocess) on the
simulator over a real pseudo-terminal and a real Mosquitto, with a
subscriber recording everything published.  For every fault the tests check
that the daemon

* never crashes or hangs (it is alive throughout, and stops on SIGTERM);
* never publishes a half-parsed or invented value: with drift off the bank
  does not change, so every data message (Victron ``pylon`` / ``battery_N``,
  Home Assistant ``.../state``) sent during a fault must equal the clean one
  taken before it, field for field (charge-control fields aside, as they
  rightly react to a fault), or not be sent at all;
* marks what is unknown as offline (``<base>/status``) in time;
* recovers by itself once the fault ends, with exact values again;
* logs the fault once with a clear message, not every poll.

Run time is kept down by running faults concurrently where they do not
interfere: the minute-long broker outage and the dropped-bytes soak each run
in the background from the first test that uses them (at the top of the
file) to the test that ends them (at the bottom), while the other faults run
in between; the serial faults that need no fresh daemon share one session.

The first run of this suite found defects (a garbled completion line taken
for a rejection, slow stops, per-exchange warnings, late ``offline``, a
traceback per record on a full log disk, config mistakes that loaded): each
has its test here and has been fixed.
"""

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import yaml

from daemon_helpers import ENTRY, DaemonProcess, write_config
from extra200.simulator import PtySimulator
from mqtt_helpers import Recorder
from servers import Mosquitto
from test_end_to_end import expected_bank
from extra200.victron import LAST_WORD_MODE
from victron_schema import problems

# write_config's defaults, which every bound below is derived from
READING_FREQ = 1.0
COMMAND_TIMEOUT = 3.0
STALE_AFTER = 6.0
# The transport's resynchronisation after a failed command: three line ends a
# second apart and two short drains (transport.Console.probe_wait, _POLL).
RESYNC = 3 * 1.0 + 2 * 0.2
# Waking the console again after two failed polls: two probes, the 1200-baud
# frame, four probes.
REWAKE = 2 * 1.0 + 0.5 + 4 * 1.0
# A poll against a console that stopped answering: two attempts, each a
# timeout and a resynchronisation, then (every second failed poll) a wake-up.
FAILING_POLL = 2 * (COMMAND_TIMEOUT + RESYNC) + REWAKE
MARGIN = 5.0  # a loaded two-core CI machine

OUTAGE = 60.0  # the broker outage the issue asks for
SOAK = 60.0  # the dropped-bytes soak

Message = Tuple[float, str, bytes, bool]  # as Recorder keeps them: (time, topic, payload, retained)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<name>[\w.]+): (?P<message>.*)$")

# Fields that follow the charge control, which rightly reacts to a fault
# (lower limits, alarms); everything else must not change while the bank does not.
VICTRON_CONTROL = ("Info", "Io", "Alarms")
VICTRON_CONTROL_SYSTEM = ("NrOfModulesBlockingCharge", "NrOfModulesBlockingDischarge")
VICTRON_COUNTING = ("ChargedEnergy", "DischargedEnergy")  # they grow with time
# Unknown in the clean bank too: no time to go while charging or resting, a unit without a MOSFET sensor.
MAY_BE_UNKNOWN = {"TimeToGo", "MOSTemperature", "mos_temperature", "time_to_full", "time_to_empty"}
HA_CONTROL = {
    "charge_voltage_limit",
    "charge_current_limit",
    "discharge_current_limit",
    "charging_allowed",
    "discharging_allowed",
    "charge_mode",
    "limit_reasons",
    "alarm",
    "events",
    "energy_charged",
    "energy_discharged",  # they grow with time
}


def ha_control(key: str) -> bool:
    """A Home Assistant state key that follows the charge control (its alarms, its attributes too)."""
    if key.endswith("_attributes"):
        key = key[: -len("_attributes")]
    return key in HA_CONTROL or key.startswith("alarm_")


# ----------------------------------------------------------------------------- helpers


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def is_victron(base: str, topic: str) -> bool:
    return topic == base + "/pylon" or re.fullmatch(re.escape(base) + r"/battery_\d+", topic) is not None


def is_data(base: str, topic: str) -> bool:
    """A message carrying battery values (Victron or Home Assistant state)."""
    return is_victron(base, topic) or (topic.startswith(base + "/homeassistant/") and topic.endswith("/state"))


def is_last_word(base: str, topic: str, payload: bytes) -> bool:
    """The Victron "stop charging" message sent when the data goes stale or the daemon stops: no data."""
    return is_victron(base, topic) and json.loads(payload).get("Info", {}).get("ChargeMode") == LAST_WORD_MODE


def measured(base: str, topic: str, payload: bytes) -> Dict[str, Any]:
    """The part of a data message that only the bank's values decide."""
    data = json.loads(payload)
    if is_victron(base, topic):
        view = {k: v for k, v in data.items() if k not in VICTRON_CONTROL}
        view["System"] = {k: v for k, v in data.get("System", {}).items() if k not in VICTRON_CONTROL_SYSTEM}
        view["History"] = {k: v for k, v in data.get("History", {}).items() if k not in VICTRON_COUNTING}
        return view
    return {k: v for k, v in data.items() if not ha_control(k)}


def complete(view: Dict[str, Any]) -> bool:
    """Everything read at least once: no unknown value and every cell extreme located to its cell."""
    for key, value in view.items():
        if isinstance(value, dict):
            if not complete(value):
                return False
        elif value is None and key not in MAY_BE_UNKNOWN:
            return False
        elif key.endswith("CellId") and "C" not in str(value)[1:]:
            return False
    return True


def _unknowns(view: Dict[str, Any], prefix: str = "") -> List[str]:
    found = []
    for key, value in view.items():
        if isinstance(value, dict):
            found.extend(_unknowns(value, prefix + key + "."))
        elif value is None and key not in MAY_BE_UNKNOWN:
            found.append(prefix + key)
    return found


def not_yet_known(reference: Any, value: Any) -> bool:
    """A value the daemon does not know yet (or no longer), where the reference knows it: not wrong.

    The first messages after a start go out before cells and identity are read; a cell
    extreme is first located only to its unit ("B1" for "B1C8")."""
    if value is None or value == "<absent>":
        return True
    return isinstance(value, str) and isinstance(reference, str) and reference.startswith(value + "C")


def normalised(message: str) -> str:
    """A log message with its measurements (seconds, byte counts, ports) blanked, to count repeats;
    small numbers (battery addresses, cells) stay, as they tell different messages apart."""
    return re.sub(r"\d+\.\d+|\d{3,}", "#", message)


class Session:
    """One daemon on one simulator and a broker, with a recorder on ``<base>/#``."""

    def __init__(self, directory: str, broker_port: int, device: str, base: str, *extra: str, **sections: Dict[str, Any]) -> None:
        os.makedirs(directory, exist_ok=True)
        self.base = base
        self.directory = directory
        self.broker_port = broker_port
        self.device = device
        # One client id per session: two daemons with one id (the default is per host) throw each other off.
        mqtt = dict(sections.pop("mqtt", {}))
        mqtt.setdefault("client_id", "extra200-faults-" + base)
        self.config = write_config(directory, broker_port, base, mqtt=mqtt, **sections)
        self.recorder = Recorder(broker_port, (base + "/#",))
        self.daemon = DaemonProcess(self.config, device, *extra).start()
        self.reference: Dict[str, Dict[str, Any]] = {}

    # -- what was published ------------------------------------------------
    def messages(self, start: int = 0, end: Optional[int] = None) -> List[Message]:
        return list(self.recorder.messages)[start:end]

    def data(self, start: int = 0, end: Optional[int] = None) -> List[Message]:
        """Messages with battery values (the last word carries none)."""
        return [m for m in self.messages(start, end) if is_data(self.base, m[1]) and not is_last_word(self.base, m[1], m[2])]

    def last_words(self, start: int = 0, end: Optional[int] = None) -> List[Message]:
        return [m for m in self.messages(start, end) if is_last_word(self.base, m[1], m[2])]

    def status(self, start: int = 0) -> List[bytes]:
        return [m[2] for m in self.messages(start) if m[1] == self.base + "/status"]

    def wait_status(self, value: bytes, timeout: float, after: int = 0) -> Optional[Message]:
        return self.recorder.wait_for(lambda t, p: t == self.base + "/status" and p == value, timeout, after)

    def wait_bank(
        self, timeout: float, after: int = 0, check: Callable[[Dict[str, Any]], bool] = lambda payload: True
    ) -> Optional[Message]:
        return self.recorder.wait_for(lambda t, p: t == self.base + "/pylon" and check(json.loads(p)), timeout, after)

    def wait_healthy(self, timeout: float, after: int = 0) -> None:
        """Online, and a full round of data messages equal to the reference (when there is one)."""
        assert self.wait_status(b"online", timeout, after) or self.status(0)[-1:] == [b"online"], self.log()
        start = self.recorder.count()
        wanted = set(self.reference) or {self.base + "/pylon"}
        assert wait_until(lambda: wanted <= {m[1] for m in self.data(start)}, timeout), (
            "no fresh data after recovery:\n%s" % self.log()
        )
        assert self.wrong_values(start) == []

    # -- exactness ---------------------------------------------------------
    def take_reference(self, sim: PtySimulator) -> None:
        """The clean data messages (the last one of each topic), checked against the simulated bank."""
        units = [u.address for u in sim.bank.snapshots() if u.present]
        wanted = {self.base + "/pylon", self.base + "/homeassistant/bank/state"}
        wanted |= {"%s/battery_%d" % (self.base, a) for a in units}
        wanted |= {"%s/homeassistant/battery_%d/state" % (self.base, a) for a in units}
        latest: Dict[str, bytes] = {}

        def settled() -> bool:  # every topic has carried everything once the cells and identity are read
            for _, topic, payload, _ in self.data():
                latest[topic] = payload
            return wanted <= set(latest) and all(complete(measured(self.base, topic, latest[topic])) for topic in wanted)

        assert wait_until(settled, 90), (
            self.log()[-3000:],
            {t: _unknowns(measured(self.base, t, latest[t])) for t in wanted if t in latest},
            wanted - set(latest),
        )
        self.reference = {topic: measured(self.base, topic, payload) for topic, payload in latest.items()}
        # anchored in the simulated bank, so "equal to the reference" means "equal to the truth"
        expected = expected_bank(sim)
        bank = json.loads(latest[self.base + "/pylon"])
        assert problems(bank) == []
        assert bank["Dc"]["Voltage"] == expected["voltage"]
        assert bank["Dc"]["Current"] == expected["current"]
        assert bank["Soc"] == expected["soc"]
        assert bank["System"]["MinCellVoltage"] == expected["min_cell"]
        assert bank["System"]["MaxCellVoltage"] == expected["max_cell"]
        assert bank["System"]["NrOfModulesOnline"] == expected["units"]
        for address, unit in expected["per_unit"].items():
            payload = json.loads(latest["%s/battery_%d" % (self.base, address)])
            assert payload["Dc"]["Voltage"] == unit.voltage_mv / 1000.0
            cells = {k: v for k, v in payload["Voltages"].items() if k.startswith("Cell")}
            assert cells == {"Cell%d" % (i + 1): mv / 1000.0 for i, mv in enumerate(unit.cells_mv)}

    def wrong_values(self, start: int = 0, end: Optional[int] = None) -> List[str]:
        """Every data message in the range that differs from the reference, or breaks the driver's schema."""
        found: List[str] = []
        for _, topic, payload, _ in self.data(start, end):
            if is_victron(self.base, topic):
                found.extend("%s: %s" % (topic, p) for p in problems(json.loads(payload)))
            view = measured(self.base, topic, payload)
            reference = self.reference.get(topic)
            if reference is None:
                found.append("%s: a topic the clean bank never used: %s" % (topic, payload[:200]))
                continue
            wrong = _differences(reference, view)
            if wrong:
                found.append("%s differs: %s" % (topic, wrong))
        return found

    # -- the log -----------------------------------------------------------
    def log(self) -> str:
        return self.daemon.log()

    def line_count(self) -> int:
        return len(self.daemon.lines)

    def warning_lines(self, start: int = 0, end: Optional[int] = None) -> List[Tuple[str, str]]:
        """(logger, message) of every WARNING or worse line in the range."""
        found = []
        for line in list(self.daemon.lines)[start:end]:
            match = LOG_LINE.match(line)
            if match and match.group("level") in ("WARNING", "ERROR", "CRITICAL"):
                found.append((match.group("name"), match.group("message")))
        return found

    def warnings(self, start: int = 0, end: Optional[int] = None) -> List[Tuple[str, str]]:
        """Like ``warning_lines`` with the numbers blanked, so that repeats compare equal."""
        return [(name, normalised(message)) for name, message in self.warning_lines(start, end)]

    def repeated(
        self,
        start: int = 0,
        end: Optional[int] = None,
        loggers: Callable[[str], bool] = lambda name: name != "extra200.transport",
    ) -> Dict[Tuple[str, str], int]:
        """WARNING-or-worse messages logged more than once in the range (by default not the transport's)."""
        counts = collections.Counter(w for w in self.warnings(start, end) if loggers(w[0]))
        return {w: n for w, n in counts.items() if n > 1}

    def count(self, fragment: str, start: int = 0) -> int:
        return sum(1 for line in list(self.daemon.lines)[start:] if fragment in line)

    def close(self) -> None:
        self.daemon.kill()
        self.recorder.close()


def _differences(reference: Dict[str, Any], view: Dict[str, Any], prefix: str = "") -> List[str]:
    """Values of ``view`` that differ from the reference; a value not known (yet) is no difference."""
    out = []
    for key in sorted(set(reference) | set(view)):
        a, b = reference.get(key, "<absent>"), view.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, prefix + key + "."))
        elif a != b and not not_yet_known(a, b):
            out.append("%s%s: %r -> %r" % (prefix, key, a, b))
    return out


def episodes_alternate(session: Session, start: int, pairs: Sequence[Tuple[str, str]]) -> List[str]:
    """For each (begin, end) regex pair with one group naming the subject (a command, or ''), a begin
    line must not come twice for one subject without an end line between them (logged once per episode)."""
    found = []
    for begin, end in pairs:
        open_subjects: Dict[str, str] = {}
        for line in list(session.daemon.lines)[start:]:
            started, ended = re.search(begin, line), re.search(end, line)
            if started:
                subject = started.group(1) if started.groups() else ""
                if subject in open_subjects:
                    found.append("logged again within one episode:\n  %s\n  %s" % (open_subjects[subject], line))
                open_subjects[subject] = line
            elif ended:
                open_subjects.pop(ended.group(1) if ended.groups() else "", None)
    return found


def on_command(sim: PtySimulator, command: str) -> threading.Event:
    """An event set the moment the simulated console receives ``command`` followed by a line end."""
    seen = threading.Event()
    line = bytearray()
    receive = sim.console.receive

    def watching(data: bytes, baud: int, now: Optional[float] = None) -> float:
        for byte in bytearray(data):
            if byte in (0x0D, 0x0A):
                if bytes(line).strip() == command.encode("ascii"):
                    seen.set()
                line.clear()
            else:
                line.append(byte)
        return receive(data, baud, now)

    sim.console.receive = watching  # type: ignore[assignment]
    return seen


# ------------------------------------------------------------- background: broker outage


class Outage:
    def __init__(self, server: Mosquitto, sim: PtySimulator, session: Session) -> None:
        self.server = server
        self.sim = sim
        self.session = session
        self.stopped_at = 0.0
        self.lines_before = 0


@pytest.fixture(scope="module")
def outage(tmp_path_factory: Any) -> Iterator[Outage]:
    """A daemon whose broker is stopped (for a minute) as soon as it has published clean data."""
    server = Mosquitto().start()
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session = Session(str(tmp_path_factory.mktemp("outage")), server.port, sim.path, "fo")
    run = Outage(server, sim, session)
    try:
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        run.lines_before = session.line_count()
        session.recorder.close()
        server.stop()
        run.stopped_at = time.monotonic()
        sim.bank.set_soc(1, 55)  # polled while the broker is away, published once it is back
        yield run
    finally:
        session.close()
        sim.stop()
        server.close()


def test_broker_outage_begins(outage: Outage) -> None:
    session = outage.session
    assert session.daemon.wait_log("lost the connection", timeout=20), session.log()
    assert session.daemon.alive


# -------------------------------------------------------- background: dropped bytes soak


# The soak's phases: (seconds, bytes dropped, bytes replaced by a random printable character) per byte.
# Replaced bytes are the hard case: a digit turned into another digit still parses.
SOAK_PHASES = ((SOAK / 3, 0.001, 0.0), (SOAK / 3, 0.0, 0.0003), (SOAK / 3, 0.0003, 0.001))


class Soak:
    def __init__(self, sim: PtySimulator, session: Session) -> None:
        self.sim = sim
        self.session = session
        self.started_at = 0.0
        self.first_message = 0
        self.first_line = 0
        self.phase_starts: List[int] = []  # recorder index where each phase began
        self.done = threading.Event()

    def run_phases(self) -> None:
        for seconds, drop, garbage in SOAK_PHASES:
            self.phase_starts.append(self.session.recorder.count())
            self.sim.bank.set_drop(drop)
            self.sim.bank.set_garbage(garbage)
            if self.done.wait(seconds):
                break
        self.sim.bank.set_drop(0.0)
        self.sim.bank.set_garbage(0.0)


@pytest.fixture(scope="module")
def soak(tmp_path_factory: Any, broker: Mosquitto) -> Iterator[Soak]:
    """A daemon reading every unit's cells each poll while the console loses and garbles bytes at random."""
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session = Session(str(tmp_path_factory.mktemp("soak")), broker.port, sim.path, "fd", serial={"cells_interval": 0})
    run = Soak(sim, session)
    try:
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        run.first_message = session.recorder.count()
        run.first_line = session.line_count()
        run.started_at = time.monotonic()
        phases = threading.Thread(target=run.run_phases, daemon=True)
        phases.start()
        yield run
    finally:
        run.done.set()
        session.close()
        sim.stop()


def test_random_dropped_bytes_begin(soak: Soak) -> None:
    session = soak.session
    assert session.daemon.wait_log("gave no confirmed reply", timeout=30), session.log()
    assert session.daemon.alive


# ------------------------------------------------------------ the shared serial session


class SerialSession(Session):
    """The serial faults that need no fresh daemon, one after the other; each restores a clean bank."""

    sim: PtySimulator


@pytest.fixture(scope="module")
def serial(tmp_path_factory: Any, broker: Mosquitto) -> Iterator[SerialSession]:
    directory = str(tmp_path_factory.mktemp("serial"))
    sim = PtySimulator("us2000c-3", drift=False, link=os.path.join(directory, "ttyPYLON"))
    sim.start()
    session = SerialSession(directory, broker.port, sim.device, "fs", battery={"addresses": [1, 2, 3]})
    session.sim = sim
    try:
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        yield session
    finally:
        session.close()
        sim.stop()


@pytest.fixture
def clean(serial: SerialSession) -> Iterator[SerialSession]:
    """The shared session, healthy at the start; every fault is cleared at the end."""
    bank = serial.sim.bank
    serial.wait_healthy(40)
    try:
        yield serial
    finally:
        bank.set_silent(False)
        bank.set_garbage(0.0)
        bank.set_drop(0.0)
        bank.set_all_absent(False)
        assert serial.daemon.alive, serial.log()


def test_battery_drops_out_of_pwr_and_comes_back(clean: SerialSession) -> None:
    s, bank = clean, clean.sim.bank
    lines, start = s.line_count(), s.recorder.count()
    bank.set_absent(2)
    two = s.wait_bank(15, start, lambda p: p["System"]["NrOfModulesOnline"] == 2)
    assert two is not None, s.log()
    unit2_offline = s.recorder.wait_for(
        lambda t, p: t == s.base + "/homeassistant/battery_2/availability" and p == b"offline", 10, start
    )
    assert unit2_offline is not None, "Home Assistant still shows battery 2 as available"
    time.sleep(3)
    expected = expected_bank(s.sim)  # units 1 and 3
    back = s.recorder.count()
    bank.set_absent(2, False)
    assert s.wait_bank(15, back, lambda p: p["System"]["NrOfModulesOnline"] == 3), s.log()

    two_at = next(i for i, m in enumerate(s.messages()) if m is two)
    for index, (_, topic, payload, _) in enumerate(s.messages(start, back), start):
        if not is_data(s.base, topic):
            continue
        data = json.loads(payload)
        if topic == s.base + "/pylon" and data["System"]["NrOfModulesOnline"] == 2:
            assert problems(data) == []
            assert data["Dc"]["Voltage"] == expected["voltage"]
            assert data["Dc"]["Current"] == expected["current"]
            assert data["Soc"] == expected["soc"]
            assert data["InstalledCapacity"] == expected["capacity"]
            assert data["System"]["MinCellVoltage"] == expected["min_cell"]
            assert data["System"]["MaxCellVoltage"] == expected["max_cell"]
            assert data["System"]["NrOfModulesOffline"] == 1
            assert data["Info"]["MaxChargeCurrent"] <= 2 * 25.0
        elif topic == s.base + "/homeassistant/bank/state" and data.get("units_online") == 2:
            assert data["voltage"] == expected["voltage"] and data["soc"] == expected["soc"]
        else:  # the 3-unit bank before the change, and units 1 and 3 all along
            assert s.wrong_values(index, index + 1) == []
            assert not (index > two_at and topic.endswith("battery_2")), "battery 2 published while absent"
            assert not (index > two_at and topic.endswith("battery_2/state")), "battery 2 state while absent"
    assert b"offline" not in s.status(start), "one unit missing is not a stale bank"
    s.wait_healthy(20, back)
    assert s.count("configured battery 2 is absent", lines) == 1
    assert s.count("configured battery 2 is present again", lines) == 1
    assert s.repeated(lines) == {}


def test_all_batteries_absent(clean: SerialSession) -> None:
    s, bank = clean, clean.sim.bank
    lines, start = s.line_count(), s.recorder.count()
    last_data = s.data()[-1][0]
    bank.set_all_absent()
    changed = time.monotonic()
    offline = s.wait_status(b"offline", STALE_AFTER + 2 * READING_FREQ + MARGIN, start)
    assert offline is not None, s.log()
    # The console answers at once, so no poll hangs: offline within stale_after of the last good poll.
    assert offline[0] - last_data <= STALE_AFTER + 2 * READING_FREQ + MARGIN
    assert s.recorder.wait_for(lambda t, p: t == s.base + "/homeassistant/bank/availability" and p == b"offline", 5, start)
    time.sleep(3)
    # Nothing invented for a bank without batteries: no data after the first poll that saw them go.
    late = [m for m in s.data(start) if m[0] > changed + READING_FREQ + 1.0]
    assert late == [], late
    assert s.wrong_values(start) == []
    back = s.recorder.count()
    bank.set_all_absent(False)
    s.wait_healthy(STALE_AFTER + MARGIN * 2, back)
    for address in (1, 2, 3):
        assert s.count("configured battery %d is absent" % address, lines) == 1
    assert s.count("marking the bank offline", lines) == 1
    offline_line = next(line for line in s.daemon.lines[lines:] if "marking the bank offline" in line)
    assert "no battery present" in offline_line, "the reason must say why: %s" % offline_line
    assert s.repeated(lines) == {}


def test_console_silent_mid_reply(clean: SerialSession) -> None:
    s, bank = clean, clean.sim.bank
    lines, start = s.line_count(), s.recorder.count()
    bank.cut_next_reply(300)
    assert wait_until(lambda: not bank.console_flags().cut_after, 10)  # a reply has started and is cut ...
    bank.set_silent(True)  # ... and the console says nothing more
    silenced = time.monotonic()
    last_good = max(m[0] for m in s.data() if m[0] <= silenced)
    offline = s.wait_status(b"offline", STALE_AFTER + FAILING_POLL + MARGIN, start)
    assert offline is not None, s.log()
    # Offline within stale_after of the last good data, although a poll hangs on the silent console.
    assert offline[0] - last_good <= STALE_AFTER + READING_FREQ + 2.0, s.log()
    time.sleep(3)
    sustained = (lines, s.line_count())
    assert [m for m in s.data(start) if m[0] > silenced + 0.5] == []
    back = s.recorder.count()
    bank.set_silent(False)
    s.wait_healthy(FAILING_POLL + STALE_AFTER + MARGIN, back)
    assert s.wrong_values(start) == []
    assert s.count("marking the bank offline", lines) == 1
    assert s.count("fresh data again", lines) == 1
    assert s.repeated(lines) == {}
    # While the console stays silent, every logger (the transport's too) says so once.
    assert s.repeated(*sustained, loggers=lambda logger: True) == {}


def test_pwr_answers_then_the_console_falls_silent_mid_poll(clean: SerialSession) -> None:
    """The poll's pwr reads are answered, then nothing: what was read is published at once (it is fresh),
    then only the last word; no old value after it, however long the poll's remaining commands take."""
    s, sim = clean, clean.sim
    lines, start = s.line_count(), s.recorder.count()
    assert wait_until(lambda: sim.console.output.available() == 0, 5)
    sim.console.silence_after(2)  # the two reads of the next pwr, then silence
    assert wait_until(lambda: sim.bank.console_flags().silent, 10), s.log()
    silenced = time.monotonic()
    word = s.recorder.wait_for(
        lambda t, p: is_last_word(s.base, t, p) and t == s.base + "/pylon", STALE_AFTER + FAILING_POLL + MARGIN, start
    )
    assert word is not None, s.log()
    assert json.loads(word[2])["Info"]["MaxChargeCurrent"] == 0
    time.sleep(3)
    late = [m for m in s.data(start) if m[0] > word[0]]
    assert late == [], "old values published after the last word: %s" % late[:2]
    assert all(m[0] <= silenced + READING_FREQ + 1.0 for m in s.data(start)), "a value published from a silent console"
    back = s.recorder.count()
    sim.bank.set_silent(False)
    s.wait_healthy(FAILING_POLL + STALE_AFTER + MARGIN, back)
    assert s.wrong_values(start) == []
    assert s.count("marking the bank offline", lines) == 1


def test_garbage_storm(clean: SerialSession) -> None:
    """So much line noise that no reply survives: nothing is published, offline, then back."""
    s, bank = clean, clean.sim.bank
    lines, start = s.line_count(), s.recorder.count()
    bank.set_garbage(0.02)
    noisy = time.monotonic()
    offline = s.wait_status(b"offline", STALE_AFTER + FAILING_POLL + MARGIN, start)
    assert offline is not None, s.log()
    time.sleep(3)
    late = [m for m in s.data(start) if m[0] > noisy + READING_FREQ + 1.0]
    assert late == [], "published during the storm: %s" % late[:3]
    assert s.wrong_values(start) == []
    back = s.recorder.count()
    bank.set_garbage(0.0)
    s.wait_healthy(FAILING_POLL + STALE_AFTER + MARGIN, back)
    assert s.count("rejects", lines) == 0, "line noise taken for a firmware that rejects a command"
    assert s.count("marking the bank offline", lines) == 1
    assert s.repeated(lines) == {}


def test_serial_adapter_unplugged_and_replugged(clean: SerialSession) -> None:
    s, sim = clean, clean.sim
    lines, start = s.line_count(), s.recorder.count()
    last_good = s.data()[-1][0]
    sim.unplug()
    try:
        # The open is retried with a growing delay (1, 2, 4, 8 s); staleness is checked between tries.
        offline = s.wait_status(b"offline", STALE_AFTER + 8 + MARGIN, start)
        assert offline is not None, s.log()
        assert offline[0] - last_good <= STALE_AFTER + 8 + MARGIN
        time.sleep(3)
        sustained = (lines, s.line_count())
        assert s.daemon.alive
        assert not os.path.exists(sim.device)
    finally:
        back = s.recorder.count()
        sim.replug()  # a new pseudo-terminal behind the same path
    s.wait_healthy(16 + READING_FREQ + MARGIN * 2, back)
    assert s.wrong_values(start) == []
    assert s.count("no such device", lines) >= 1
    errors = [w for w in s.warnings(lines) if w[0] == "extra200.daemon" and "retrying with a growing delay" in w[1]]
    assert len(errors) == 1, s.log()
    assert s.count("is usable again", lines) == 1
    assert s.repeated(lines) == {}
    # While the adapter is away, every logger (the transport's too) says so once.
    assert s.repeated(*sustained, loggers=lambda logger: True) == {}


# ------------------------------------------------------------------------ MQTT faults


class AnonymousReadBroker(Mosquitto):
    """Anonymous clients (the recorder) are let in; a client naming a user must give its password."""

    def _write_config(self) -> str:
        path = super()._write_config()
        with open(path) as handle:
            text = handle.read()
        with open(path, "w") as handle:
            handle.write(text.replace("allow_anonymous false", "allow_anonymous true"))
        return path


def test_broker_refusing_the_credentials(tmp_path: Any) -> None:
    password_file = Mosquitto.make_password_file(str(tmp_path), "daemon", "right")
    server = AnonymousReadBroker(password_file=password_file).start()
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session = Session(str(tmp_path / "run"), server.port, sim.path, "fc", mqtt={"username": "daemon", "password": "wrong"})
    try:
        assert session.daemon.wait_log("refused the connection", timeout=20), session.log()
        time.sleep(8)  # a few refused reconnects
        assert session.daemon.alive
        assert session.messages() == []
        refused = [line for line in session.daemon.lines if "refused the connection" in line]
        assert len(refused) == 1 and "authori" in refused[0].lower(), refused
        # the credentials are fixed on the broker side: the daemon gets in by itself
        Mosquitto.make_password_file(str(tmp_path), "daemon", "wrong")
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)  # Mosquitto re-reads its password file
        # paho's reconnect delay doubles up to a minute; it is at 16 s by now
        assert session.wait_status(b"online", 40 + MARGIN), session.log()
        session.take_reference(sim)
        assert session.count("connected to") == 1
        assert session.repeated() == {}
        assert session.daemon.terminate() == 0
    finally:
        session.close()
        sim.stop()
        server.close()


# -------------------------------------------------------------------- baud mismatch


def test_one_changed_digit_in_any_column_is_never_published_nor_acted_on(tmp_path: Any, broker: Mosquitto) -> None:
    """A digit of one reply changed, as line noise does it, framing intact: in every pwr column and in a
    cell table.  Nothing published differs from the clean bank, and the charge decision does not move."""
    from test_crosscheck import PWR_COLUMNS, change_digit

    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session = Session(str(tmp_path / "digits"), broker.port, sim.path, "fg", serial={"cells_interval": 0})
    try:
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        bank_before = [json.loads(m[2]) for m in session.data() if m[1] == "fg/pylon"][-1]
        start = session.recorder.count()
        edits = [("pwr", change_digit(1 + i % 3, column, -(i % 2))) for i, column in enumerate(sorted(PWR_COLUMNS.values()))]
        edits += [("bat %d" % unit, change_digit(cell, 1, 1)) for unit, cell in ((1, 0), (2, 7), (3, 14))]
        for command, edit in edits:  # one damaged reply, then a clean poll: line noise, not a storm
            sim.console.edit_replies(command, edit)
            assert wait_until(lambda: sim.console.pending_edits() == 0, 10), session.log()
            assert session.wait_bank(10, session.recorder.count()), session.log()
        done = session.recorder.count()
        assert session.wait_bank(10, done)  # a clean poll after the last damaged one
        wrong = session.wrong_values(start)
        assert wrong == [], "\n".join(wrong)
        for message in session.data(start):
            if message[1] == "fg/pylon":
                bank = json.loads(message[2])
                assert bank["Alarms"] == bank_before["Alarms"]
                assert bank["Info"]["MaxChargeCurrent"] == bank_before["Info"]["MaxChargeCurrent"]
                assert bank["Info"]["MaxDischargeCurrent"] == bank_before["Info"]["MaxDischargeCurrent"]
        assert session.count("stop charging") == 0  # sparse damage never costs the data
        assert session.count("rejects") == 0
    finally:
        session.close()
        sim.stop()


def test_baud_mismatch(tmp_path: Any, broker: Mosquitto) -> None:
    sim = PtySimulator("us2000c-3", drift=False, console_baud=19200)
    sim.start()
    wrong = Session(str(tmp_path / "wrong"), broker.port, sim.path, "fb", serial={"baud": 115200})  # a fixed baud
    try:
        assert wrong.daemon.wait_log("baud rate mismatch", timeout=30), wrong.log()
        time.sleep(7)  # more wake-up attempts (1, 2, 4 s apart)
        assert wrong.daemon.alive
        assert wrong.data() == []
        assert b"online" not in wrong.status()
        mismatch = [w for w in wrong.warnings() if w[0] != "extra200.transport" and "baud rate mismatch" in w[1]]
        assert len(mismatch) == 1, mismatch
        assert "115200" in wrong.log() and wrong.repeated() == {}
        assert "bauds worth trying: 19200, 9600, 57600, 38400, or serial.baud: auto" in wrong.log()
        assert wrong.daemon.terminate() == 0
    finally:
        wrong.close()
    # The fault ends when the configuration names the console's baud, or leaves it to auto (the default).
    right = Session(str(tmp_path / "right"), broker.port, sim.path, "fb")
    try:
        assert right.wait_status(b"online", 30), right.log()
        right.take_reference(sim)
    finally:
        right.close()
        sim.stop()


# ----------------------------------------------------- a reply cut off at every position


ONE_UNIT = {
    "name": "one US3000D, pwr table of present units only",
    "firmware": "us3000d-b1.4",
    "units": 1,
    "drift": False,
    "clock": "2025-06-01 12:00:00",
    "defaults": {"current": -3.2, "soc": 80, "cell_voltage": 3.318, "cell_offsets": [0, 1, -1, 2, 0, 1, 0, -2]},
}


def _reply_bytes(url: str, command: str, baud: int = 115200) -> Tuple[bytes, bytes]:
    """(echo part, reply part) of one exchange: the simulator's cut counts bytes of the reply part."""
    from extra200.transport import Console

    with Console(url, baud=baud, command_timeout=5) as console:
        console.wake()
        raw = console.command(command).raw
    echo = command.encode("ascii") + b"\n"
    assert raw.startswith(echo)
    return echo, raw[len(echo) :]


def test_a_cut_reply_is_never_complete_at_any_position() -> None:
    """Framing: the bytes of a pwr and a bat reply cut after every position never form a reply to trust."""
    from extra200.framing import FramingError, ReplyAssembler

    for command in ("pwr", "bat 2"):
        echo, reply = _reply_bytes("pylonsim://us2000c-3?drift=0", command)
        for position in range(len(reply)):
            assembler = ReplyAssembler(command)
            assembler.feed(echo + reply[:position])
            if assembler.complete:
                with pytest.raises(FramingError):
                    assembler.reply()
        whole = ReplyAssembler(command)
        whole.feed(echo + reply)
        assert whole.complete and whole.reply().ok


def test_poll_with_a_reply_cut_off_at_every_position(tmp_path: Any, monkeypatch: Any) -> None:
    """Transport and poller: a ``pwr`` reply cut after each of its bytes in turn; the poll retries and reads
    the exact values, and when the retry is cut too the poll fails without touching the records."""
    from extra200 import transport
    from extra200.config import BatteryConfig, SerialConfig
    from extra200.poller import BankReader, PollFailed

    scenario = tmp_path / "one.yaml"
    scenario.write_text(yaml.safe_dump(ONE_UNIT))
    # A console line 35 times faster than 115200 baud and short waits, so that ~450 cut replies take seconds.
    url = "pylonsim://%s?console_baud=4000000" % scenario
    monkeypatch.setattr(transport, "_POLL", 0.01)
    _, reply = _reply_bytes(url, "pwr", 4000000)
    positions = list(range(len(reply)))

    def run(chunk: Sequence[int], failures: List[str]) -> None:
        try:
            check(chunk, failures)
        except Exception as exc:  # reported in the test, not lost in the thread
            failures.append("%s: %r" % (chunk[:1], exc))

    def check(chunk: Sequence[int], failures: List[str]) -> None:
        console = transport.Console(url, baud=4000000, command_timeout=0.05)
        console.probe_wait = 0.05
        reader = BankReader(console, SerialConfig(cells_interval=86400, info_interval=86400), BatteryConfig())
        with console:
            console.wake()
            clean = reader.read(full=True).batteries[1].row
            refused = set(reader.rejected)  # this firmware refuses info N and stat N
            bank = console._port.bank  # the simulated battery behind this console (pylonsim's Serial)
            for position in chunk:
                bank.cut_next_reply(position)
                try:
                    row = reader.read().batteries[1].row
                except PollFailed:
                    # The waits here are short for speed: on a loaded machine a sound read may miss one.
                    # Cut at the same place again with time to spare: a real defect fails again.
                    console.command_timeout = 1.0
                    bank.cut_next_reply(position)
                    try:
                        row = reader.read().batteries[1].row
                    except PollFailed as exc:
                        failures.append("cut at %d: the retry failed: %s" % (position, exc))
                        continue
                    finally:
                        console.command_timeout = 0.05
                if row != clean:
                    failures.append("cut at %d: %r" % (position, row))
                if bank.console_flags().cut_after:
                    failures.append("cut at %d was never applied" % position)
            # both tries cut: the poll fails and the last good row stays as it was
            for position in chunk[::25]:
                before = reader.batteries[1].row
                bank.cut_next_reply(position, replies=2)
                try:
                    reader.read()
                    failures.append("cut twice at %d: the poll did not fail" % position)
                except PollFailed:
                    pass
                if reader.batteries[1].row is not before:
                    failures.append("cut twice at %d: the records changed" % position)
            if reader.rejected != refused:
                failures.append("a cut reply taken for a rejected command: %s" % reader.rejected)

    failures: List[str] = []
    threads = [threading.Thread(target=run, args=(positions[i::4], failures)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


# ----------------------------------------------------------------- signals and restarts


def test_stop_within_two_seconds_while_a_command_waits_thirty(tmp_path: Any, broker: Mosquitto) -> None:
    """SIGTERM while a command waits for a silent console with command_timeout 30: out within 2 s."""
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session = Session(str(tmp_path / "long"), broker.port, sim.path, "fl", serial={"command_timeout": 30, "stale_after": 120})
    try:
        assert session.wait_status(b"online", 60), session.log()
        sim.bank.set_silent(True)
        time.sleep(2.0)  # polling every second: a command (or a wake-up probe) now waits for a reply
        assert session.daemon.proc is not None
        started = time.monotonic()
        session.daemon.proc.send_signal(signal.SIGTERM)
        code = session.daemon.proc.wait(timeout=35)
        took = time.monotonic() - started
        assert code == 0, session.log()
        assert took < 2.0, "stopped after %.1f s" % took
        word = session.last_words()
        assert word and json.loads(word[-1][2])["Info"]["ChargeLimitation"] == "extra200tomqtt stopped"
    finally:
        session.close()
        sim.stop()


def test_sigterm_during_a_poll(tmp_path: Any, broker: Mosquitto) -> None:
    # A console that takes 0.8 s to start each reply: the poll is certainly under way at the signal.
    sim = PtySimulator("us2000c-3", drift=False, latency=0.8)
    sim.start()
    session = Session(str(tmp_path / "slow"), broker.port, sim.path, "ft")
    try:
        assert session.wait_status(b"online", 60), session.log()
        session.take_reference(sim)
        polling = on_command(sim, "pwr")
        assert polling.wait(10)
        signalled = time.monotonic()
        assert session.daemon.terminate(timeout=15) == 0
        assert time.monotonic() - signalled < 5
        assert session.wrong_values() == []
        assert session.status()[-1] == b"offline"
    finally:
        session.close()
        sim.stop()
    # A console that fell silent: the signal must not wait for the poll's retries and wake-up.
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session = Session(str(tmp_path / "silent"), broker.port, sim.path, "ft", serial={"command_timeout": 5})
    try:
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        sim.bank.set_silent(True)
        polling = on_command(sim, "pwr")
        assert polling.wait(10)
        signalled = time.monotonic()
        assert session.daemon.terminate(timeout=40) == 0
        # at most the command under way (timeout and resynchronisation), not its retry and a wake-up
        assert time.monotonic() - signalled < 5 + RESYNC + MARGIN / 2, session.log()
        assert session.wrong_values() == []
        retained = Recorder(broker.port, ("ft/status",))
        try:
            assert retained.wait_for(lambda t, p: p == b"offline", 5)
        finally:
            retained.close()
    finally:
        session.close()
        sim.stop()


def _energy(path: str) -> Dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def test_kill_9_and_restart_keeps_energy_and_database_rows(tmp_path: Any, broker: Mosquitto, own_mariadb: Any) -> None:
    """kill -9 while the database is frozen (polls only in the spool), then a restart: every poll reaches
    the database exactly once, and the energy counters neither lose nor double-count the gap."""
    database = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": own_mariadb.port,
        "user": own_mariadb.user,
        "password": own_mariadb.password,
        "database": "faults",
        "connect_timeout": 2,
        "timeout": 3,
    }
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    directory = str(tmp_path / "run")
    energy_file = os.path.join(directory, "state", "energy.json")
    first = Session(directory, broker.port, sim.path, "fk", database=database)
    second: Optional[Session] = None
    try:
        assert first.wait_status(b"online", 30), first.log()
        first.take_reference(sim)
        started = _energy(energy_file)["counters"]["bank"]  # saved at the first poll
        assert first.daemon.wait_log("database 127.0.0.1", timeout=20), first.log()
        time.sleep(2)
        own_mariadb.freeze()  # from now on polls only reach the spool
        frozen = time.time()
        time.sleep(5)
        killed = time.time()
        before_kill = first.recorder.count()
        assert first.daemon.proc is not None
        first.daemon.proc.kill()
        first.daemon.proc.wait(10)
        will = first.recorder.wait_for(lambda t, p: t == "fk/status" and p == b"offline", 10, before_kill)
        assert will is not None, "the broker did not send the last will"
        own_mariadb.thaw()
        first.recorder.close()

        second = Session(directory, broker.port, sim.path, "fk", database=database)
        second.reference = first.reference
        assert second.wait_status(b"online", 30), second.log()
        assert second.daemon.wait_log("polls waiting from before", timeout=10), second.log()
        assert second.count("restored") >= 1, second.log()
        time.sleep(4)
        assert second.wrong_values() == []
        assert second.daemon.terminate() == 0
        assert first.wrong_values() == []
    finally:
        first.close()
        if second is not None:
            second.close()
        sim.stop()
        own_mariadb.thaw()

    # energy: constant power, every gap shorter than energy's max_gap, so exactly power x time
    final = _energy(energy_file)
    bank = final["counters"]["bank"]
    assert bank["power"] == started["power"] < 0
    hours = (bank["time"] - started["time"]) / 3600.0
    assert hours > 10 / 3600.0
    assert bank["discharged_wh"] == pytest.approx(-started["power"] * hours, rel=1e-9)
    assert bank["charged_wh"] == 0.0
    units = [key for key in final["counters"] if key.startswith("sn:")]
    assert len(units) == 3
    for key in units:
        unit = final["counters"][key]
        assert unit["discharged_wh"] == pytest.approx(-unit["power"] * hours, rel=1e-9), key

    # database: every poll once, none lost in the spool when the daemon was killed
    with own_mariadb.connect("faults") as connection, connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute("SELECT UNIX_TIMESTAMP(ts) FROM battery_readings WHERE address = 1 ORDER BY ts")
        times = [float(row[0]) for row in cursor.fetchall()]
        cursor.execute("SELECT COUNT(*), COUNT(DISTINCT ts, address) FROM battery_readings")
        total, distinct = cursor.fetchone()
    assert total == distinct == 3 * len(times)
    before = [t for t in times if t <= killed]  # the killed daemon's polls
    # the first poll also reads every unit's cells and identity (twice each): its gap is longer
    gaps = [b - a for a, b in zip(before, before[1:])][1:]
    assert gaps and max(gaps) < 2.5, "polls missing before kill -9: %s" % gaps
    assert before[-1] >= killed - 2.5, "the polls spooled before kill -9 were lost"
    assert any(t > killed for t in times), "nothing from the restarted daemon"
    assert max(b - a for a, b in zip(times, times[1:])) < 15
    assert sum(1 for t in times if frozen < t <= killed) >= 3


# ------------------------------------------------------------------- full and read-only disks


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _umount(path: str) -> None:
    subprocess.run(["umount", path], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _fill(directory: str) -> str:
    """Fill the file system of ``directory``; returns the filler's path."""
    path = os.path.join(directory, "filler")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(descriptor)
    return path


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


@needs_root
def test_log_ramdisk_full(tmp_path: Any, broker: Mosquitto) -> None:
    ramdisk = str(tmp_path / "ramdisk")
    os.makedirs(ramdisk)
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", ramdisk)  # minutes of DEBUG log: full only when filled
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    log_file = os.path.join(ramdisk, "battery_monitor.log")
    # DEBUG: every poll writes kilobytes, more than the slack in the log file's last page
    session = Session(
        str(tmp_path / "run"),
        broker.port,
        sim.path,
        "fl",
        "--log-file",
        log_file,
        battery={"addresses": [1, 2, 3]},
        logging={"level": "DEBUG"},
    )
    try:
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        lines, start = session.line_count(), session.recorder.count()
        filler = _fill(ramdisk)
        for _ in range(2):  # things worth logging while the disk is full
            sim.bank.set_absent(2)
            time.sleep(2.5)
            sim.bank.set_absent(2, False)
            time.sleep(2.5)
        assert session.daemon.alive
        assert session.wait_bank(5, start)
        stderr = session.daemon.lines[lines:]
        assert not any("Logging error" in line or line.startswith("Traceback") for line in stderr), "\n".join(stderr[:30])
        full = [line for line in stderr if "No space left" in line or "log file" in line]
        # said once per file on the full disk: the main log, and the events log beside it
        assert len([line for line in full if "battery_monitor.log" in line]) == 1, full
        assert len([line for line in full if "battery_events.log" in line]) <= 1, full
        assert len(full) == len([line for line in full if ".log" in line]), full
        # space again: the log file gets the next lines
        os.unlink(filler)
        sim.bank.set_absent(3)
        assert session.daemon.wait_log("configured battery 3 is absent", 10)
        sim.bank.set_absent(3, False)
        assert wait_until(lambda: "configured battery 3 is absent" in open(log_file).read(), 10)
        assert session.daemon.terminate() == 0
    finally:
        session.close()
        sim.stop()
        _umount(ramdisk)


@needs_root
def test_state_directory_read_only(tmp_path: Any, broker: Mosquitto) -> None:
    directory = str(tmp_path / "run")
    state = os.path.join(directory, "state")
    os.makedirs(state)
    _mount("--bind", state, state)
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    session: Optional[Session] = None
    try:
        _mount("-o", "remount,bind,ro", state)
        # everything the daemon keeps there: energy counters, Home Assistant's record, the events log,
        # and (here) the status file
        session = Session(
            directory, broker.port, sim.path, "fr", status_file={"enabled": True, "path": os.path.join(state, "status.json")}
        )
        assert session.wait_status(b"online", 30), session.log()
        session.take_reference(sim)
        time.sleep(6)
        assert session.daemon.alive
        assert session.wrong_values() == []
        about_state = [w for w in session.warning_lines() if state in w[1]]
        for what in ("energy counters", "status file"):
            assert any(what in w[1] for w in about_state), session.log()
        counts = collections.Counter(about_state)
        assert all(n == 1 for n in counts.values()), counts
        assert session.repeated() == {}
        # writable again: what was kept in memory is written on the way out
        _mount("-o", "remount,bind,rw", state)
        assert session.daemon.terminate() == 0
        assert session.count("written again") >= 1, session.log()
        assert _energy(os.path.join(state, "energy.json"))["counters"]["bank"]["discharged_wh"] > 0
    finally:
        if session is not None:
            session.close()
        sim.stop()
        _umount(state)


# --------------------------------------------------------------------- configuration mistakes


CONFIG_MISTAKES = [
    pytest.param("serial:\n  port: /dev/ttyUSB0\n   baud: 9600\n", "line 3", id="bad-indentation"),
    pytest.param("serial:\n\tport: /dev/ttyUSB0\n", "line 2", id="tab-indentation"),
    pytest.param("mqtt: {broker: [unclosed\n", "not valid YAML", id="unclosed-bracket"),
    pytest.param("- mqtt\n- serial\n", "must be a section of keys", id="list-at-top"),
    pytest.param("battery: 5\n", "battery", id="section-not-a-mapping"),
    pytest.param("mqqt:\n  broker: x\n", "mqqt", id="misspelt-section"),
    pytest.param("serial:\n  baudrate: 9600\n", "serial.baudrate", id="misspelt-key"),
    pytest.param("serial:\n  baud: fast\n", "serial.baud", id="word-for-number"),
    pytest.param('mqtt:\n  port: "1883"\n', "mqtt.port", id="quoted-number"),
    pytest.param("mqtt:\n  port: true\n", "mqtt.port", id="boolean-for-number"),
    pytest.param("mqtt:\n  port:\n", "mqtt.port", id="empty-value"),
    pytest.param("mqtt:\n  port: 70000\n", "mqtt.port", id="port-out-of-range"),
    pytest.param("serial:\n  reading_freq: 0.1\n", "serial.reading_freq", id="too-fast"),
    pytest.param("serial:\n  stale_after: .nan\n", "serial.stale_after", id="not-a-number"),
    pytest.param("serial:\n  baud: 12345\n", "serial.baud", id="unknown-baud"),
    pytest.param("serial:\n  wakeup: sometimes\n", "serial.wakeup", id="not-a-choice"),
    pytest.param("battery:\n  addresses: [0, 17]\n", "battery.addresses", id="address-out-of-range"),
    pytest.param("battery:\n  addresses: [1, 2, 2]\n", "battery.addresses", id="address-twice"),
    pytest.param("battery:\n  addresses: 1,2\n", "battery.addresses", id="addresses-not-a-list"),
    pytest.param("battery:\n  num_cells: 14\n", "battery.num_cells", id="cell-count"),
    pytest.param("battery:\n  max_charge_voltage: 60\n", "battery.max_charge_voltage", id="charge-voltage"),
    pytest.param("battery:\n  max_charge_current: -5\n", "battery.max_charge_current", id="negative-current"),
    pytest.param("mqtt:\n  tls:\n    enabled: yes please\n", "mqtt.tls.enabled", id="nested-boolean"),
    pytest.param("logging:\n  level: verbose\n", "logging.level", id="log-level"),
    pytest.param(
        'charge:\n  charge_cell_voltage_curve: "3.50:100, 3.40:0"\n', "charge.charge_cell_voltage_curve", id="curve-falling"
    ),
    pytest.param("homeassistant:\n  bank_id: My Bank\n", "homeassistant.bank_id", id="bank-id"),
    pytest.param("cells:\n  level: all\n", "cells.level", id="cells-level"),
    pytest.param(
        "serial:\n  baud: 1234\nmqtt:\n  port: 0\nbattery:\n  num_cells: 17\n", "serial.baud", id="three-mistakes-at-once"
    ),
    # mistakes that loaded in the first version and broke the daemon at run time
    pytest.param("serial:\n  port: /dev/ttyUSB1\nserial:\n  baud: 19200\n", "serial", id="section-twice"),
    pytest.param('mqtt:\n  broker: ""\n', "mqtt.broker", id="empty-broker"),
    pytest.param('serial:\n  port: "pylonsim://"\n', "serial.port", id="simulator-in-a-file"),
    pytest.param("mqtt:\n  topic_base: victron/#\n", "mqtt.topic_base", id="wildcard-topic"),
    pytest.param(
        "mqtt:\n  tls:\n    enabled: true\n    ca_file: /nonexistent/ca.pem\n", "mqtt.tls.ca_file", id="missing-ca-file"
    ),
    pytest.param('serial:\n  port: ""\n', "serial.port", id="empty-port"),
    pytest.param('state_dir: ""\n', "state_dir", id="empty-state-dir"),
    pytest.param("serial:\n  reading_freq: 10\n  stale_after: 5\n", "serial.stale_after", id="stale-before-next-poll"),
    pytest.param(
        "charge:\n  bulk_cell_voltage: 3.40\n  float_cell_voltage: 3.45\n", "charge.float_cell_voltage", id="float-above-bulk"
    ),
    pytest.param("charge:\n  low_soc_warning: 5\n  low_soc_alarm: 10\n", "charge.low_soc_alarm", id="alarm-before-warning"),
]


@pytest.mark.parametrize("text, key", CONFIG_MISTAKES)
def test_config_file_mistakes_stop_with_exit_2_naming_the_key(tmp_path: Any, text: str, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    # check-config loads the file exactly as the daemon does before anything else (cli.main)
    proc = subprocess.run(
        [sys.executable, ENTRY, "--config", str(path), "check-config"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert key in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr  # which file


def test_the_daemon_itself_stops_with_exit_2(tmp_path: Any) -> None:
    """The daemon (not only check-config) stops at once on a broken, missing or unreadable file."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("serial:\n  baudrate: 9600\n")
    for path, words in ((broken, "serial.baudrate"), (tmp_path / "nothing.yaml", "cannot read"), (tmp_path, "cannot read")):
        proc = subprocess.run(
            [sys.executable, ENTRY, "--config", str(path), "--port", str(tmp_path / "ttyNONE")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2, proc.stderr
        assert str(path) in proc.stderr and words in proc.stderr, proc.stderr


def test_all_mistakes_of_a_file_at_once(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("serial:\n  baud: 9600x\n  reading_freq: 0\nmqtt:\n  port: 0\nbattery:\n  num_cells: 17\n")
    proc = subprocess.run(
        [sys.executable, ENTRY, "--config", str(path), "check-config"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    for key in ("serial.baud", "serial.reading_freq", "mqtt.port", "battery.num_cells"):
        assert key in proc.stderr, proc.stderr
    assert "4 problems" in proc.stderr


# ------------------------------------------------------------------ the background faults end


def test_random_dropped_bytes_end(soak: Soak) -> None:
    """Every value published while bytes were lost is exact; failures are logged once per episode."""
    session = soak.session
    remaining = soak.started_at + SOAK - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    soak.done.set()
    soak.sim.bank.set_drop(0.0)
    soak.sim.bank.set_garbage(0.0)
    ended = session.recorder.count()
    assert session.daemon.alive, session.log()
    session.wait_healthy(FAILING_POLL + STALE_AFTER + MARGIN, ended)
    # every number published while the line was damaged is one the console really sent
    assert session.wrong_values(soak.first_message) == []
    bounds = soak.phase_starts + [ended]
    for phase, (first, last) in enumerate(zip(bounds, bounds[1:])):
        published = [m for m in session.data(first, last) if m[1] == "fd/pylon"]
        assert len(published) >= 2, "phase %d: no poll got through, it tested nothing" % phase
    assert session.count("gave no confirmed reply", soak.first_line) >= 2
    assert (
        episodes_alternate(
            session,
            soak.first_line,
            [
                (r"'([^']+)' gave no confirmed reply", r"'([^']+)' answers again"),
                (r"marking the bank offline()", r"fresh data again()"),
            ],
        )
        == []
    )
    assert session.count("rejects", soak.first_line) == 0, "lost bytes taken for a rejected command"


def test_broker_outage_ends(outage: Outage) -> None:
    """After a minute without a broker: back by itself, the change made meanwhile published, logged once."""
    session = outage.session
    remaining = outage.stopped_at + OUTAGE - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert session.daemon.alive, session.log()
    outage.server.start()  # same port
    recorder = Recorder(outage.server.port, ("fo/#", "homeassistant/#"))
    session.recorder = recorder  # closed with the session
    # paho's reconnect delay has doubled up to a minute by now
    fresh = recorder.wait_for(lambda t, p: t == "fo/battery_1" and json.loads(p)["Soc"] == 55, 60 + MARGIN * 2)
    assert fresh is not None, session.log()
    assert recorder.wait_for(lambda t, p: t == "fo/status" and p == b"online", 5)
    # the broker lost every retained message: Home Assistant's discovery is sent again
    assert recorder.wait_for(lambda t, p: t.startswith("homeassistant/") and t.endswith("/config"), 10)
    time.sleep(2)
    changed = ("fo/pylon", "fo/battery_1", "fo/homeassistant/bank/state", "fo/homeassistant/battery_1/state")
    for _, topic, payload, _ in session.data():
        if topic in changed:  # these carry unit 1's new SoC
            data = json.loads(payload)
            assert topic != "fo/battery_1" or (data["Soc"] == 55 and problems(data) == [])
        else:
            assert measured("fo", topic, payload) == session.reference[topic], topic
    assert {"fo/battery_2", "fo/battery_3"} <= {m[1] for m in session.data()}
    lines = outage.lines_before
    assert session.count("lost the connection", lines) == 1
    assert session.count("cannot reach", lines) <= 1
    assert session.count("connected to", lines) == 1
    assert session.repeated(lines) == {}
    before_stop = recorder.count()
    assert session.daemon.terminate() == 0
    assert recorder.wait_for(lambda t, p: t == "fo/status" and p == b"offline", 5, before_stop)
