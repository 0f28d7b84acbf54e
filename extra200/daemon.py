"""The polling loop: read the bank, derive, limit, publish; survive everything.

One thread does the work in a fixed rhythm (``serial.reading_freq``),
sleeping on an event between polls so an idle daemon uses no CPU and a stop
request ends the sleep at once.  Failures are logged once when they start
and once when they end:

* the serial port cannot be opened: retried with a growing delay (up to a minute);
* a poll fails (silent console, garbage): the console is woken again after
  two failures in a row; after ``serial.stale_after`` seconds without a good
  poll the data counts as stale: the Victron topics get their last word (stop
  charging, see ``victron``), nothing else is published for the bank, and the
  availability topic says ``offline`` so Home Assistant shows the values as
  unavailable instead of old numbers;
* the broker is away: the MQTT links reconnect by themselves; polling goes on.

A poll publishes as soon as its ``pwr`` data is in (``BankReader.read_state``),
then reads cells, identity and details within a time budget
(``read_more``); a stop request interrupts a pending command at once.  A
message is published only from data read within ``stale_after``.  On a stop
the Victron topics get the last word; if the process dies, the Victron link's
MQTT last will says it.
"""

import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from .baudmemory import remember_baud, remembered_baud
from .charge import ChargeController, ChargeLimits, ChargeStateFile
from .config import Config
from .derive import BankSummary, summarize_bank
from .database import DatabaseRecorder, spool_directory
from .energy import ENERGY_FILE, EnergyCounters
from .events import EventMonitor, monitor_from_config
from .homeassistant import HomeAssistantPublisher
from .stats import LoopStats
from .statusfile import StatusFile, build_status
from .supervision import notify_status
from .model import Bank
from .mqtt import MqttLink
from .poller import BankReader, PollFailed
from .reporting import Episodes
from .transport import Console, ConsoleError, PortUnavailable
from .victron import VictronPublisher, bank_payload, unit_payload

logger = logging.getLogger(__name__)


@dataclass
class PollOutcome:
    """What one poll produced, handed to every output."""

    bank: Bank
    summary: BankSummary
    limits: ChargeLimits
    fresh: bool
    now: float  # monotonic: when the data was read
    wall_time: float


def _print_message(topic: str, payload: str, last_word: bool = False) -> bool:
    sys.stdout.write("%s %s\n" % (topic, payload))
    sys.stdout.flush()
    return True


def _limits_text(limits: Optional[ChargeLimits]) -> Optional[Dict[str, Any]]:
    """The charge decision in readable form: each limit and the rule that set it."""
    if limits is None:
        return None
    return {
        "mode": limits.mode,
        "charge_voltage": limits.charge_voltage,
        "voltage_reason": limits.voltage_reason,
        "charge_current": limits.charge_current,
        "charge_reason": limits.charge_reason,
        "discharge_current": limits.discharge_current,
        "discharge_reason": limits.discharge_reason,
    }


class Daemon:
    """Owns the console, the MQTT link and the outputs; ``run`` loops until ``stop`` is set."""

    def __init__(self, config: Config, port: str, dry_run: bool = False) -> None:
        """``config`` is the effective configuration (command-line overrides applied).

        ``dry_run`` keeps every persistent file (energy counters, spools) in a temporary
        directory, so trying the program never touches the real state.
        Raises ``CatalogueError`` for a broken events catalogue file (a configuration error).
        """
        if dry_run:
            config = dataclasses.replace(config, state_dir=tempfile.mkdtemp(prefix="extra200tomqtt-dry-run-"))
        self.config = config
        self.dry_run = dry_run
        self.port = port
        self.state_dir = config.state_dir
        state_dir = config.state_dir
        self.console = Console(
            port,
            baud=config.serial.baud,
            command_timeout=config.serial.command_timeout,
            wakeup=config.serial.wakeup,
            login_debug=config.serial.login_debug,
        )
        self._baud_kept = self._recall_baud()
        self.reader = BankReader(self.console, config.serial, config.battery)
        self.controller = ChargeController(config.charge, config.battery)
        self.charge_state = ChargeStateFile(state_dir)
        self.link: Optional[MqttLink] = None
        self.victron_link: Optional[MqttLink] = None  # its own connection: its last will stops charging
        self.victron: Optional[VictronPublisher] = None
        self.energy = EnergyCounters(os.path.join(state_dir, ENERGY_FILE))
        self.ha: Optional[HomeAssistantPublisher] = None
        self.events: Optional[EventMonitor] = monitor_from_config(config) if config.events.enabled else None
        self.database: Optional[DatabaseRecorder] = None
        self.status_file = StatusFile(config.status_file.path) if config.status_file.enabled else None
        self.stats = LoopStats(time.monotonic())
        self._diagnostics_sent: Optional[float] = None
        self.last_limits: Optional[ChargeLimits] = None
        self._stale_lock = threading.Lock()
        self._failed_outputs = Episodes(logger)  # outputs that raised, by name, until one works again
        self.last_good: Optional[float] = None
        self.stale = True
        self.polls_ok = 0
        self.polls_failed = 0
        self._failures_in_row = 0
        self._open_delay = 0.0
        self._faults = Episodes(logger)  # "console" (cannot open or wake it), "high voltage" (once per run)
        self.last_error = ""
        self.once_complete = False

    # -- set-up --------------------------------------------------------------
    def start_outputs(self) -> None:
        if self.config.database.enabled:
            self.database = DatabaseRecorder(self.config.database, spool_directory(self.config), self.config.cells.level)
            self.database.start()
        mqtt = self.config.mqtt
        if self.dry_run:
            logger.info("dry run: printing the Victron messages instead of publishing them")
            self.victron = VictronPublisher(_print_message, mqtt.topic_base, mqtt.per_battery_topics)
            return
        if not mqtt.active:
            logger.info("MQTT is off (mqtt.active: false)")
            return
        self.link = MqttLink(mqtt, self.config.client_id)
        self.victron_link = MqttLink(mqtt, self.config.client_id + "-victron", availability=False)
        self.victron = VictronPublisher(
            self._publish_victron, mqtt.topic_base, mqtt.per_battery_topics, set_will=self.victron_link.set_will
        )
        self.victron_link.start()
        if self.config.homeassistant.enabled:
            self.ha = HomeAssistantPublisher(
                self.config,
                self.link.publish,
                self.link.subscribe,
                self.link.availability_topic,
                self.state_dir,
                event_text=self._event_text,
            )
            self.link.add_connect_hook(self.ha.on_connect)
            self.ha.start()
        self.link.start()

    def _event_text(self, battery: Any) -> str:
        if self.events is None:
            return "Events monitoring off"
        return self.events.active_text(battery.address, level="warning") or "No events"

    def _publish_victron(self, topic: str, payload: str, last_word: bool = False) -> bool:
        """Data goes out fire-and-forget; a last word with qos 1, waiting briefly until the broker has it."""
        if self.victron_link is None:
            return False
        if last_word:
            return self.victron_link.publish(topic, payload, qos=1, wait=1.0)
        return self.victron_link.publish(topic, payload)

    def stop_outputs(self) -> None:
        """Close everything within about two seconds: the service manager's patience is limited."""
        if self.victron is not None:
            if self.victron_link is not None:
                self.victron_link.wait_connected(1.0)  # a last-will renewal may be reconnecting just now
            self._guarded(
                "Victron", self.victron.last_word, "extra200tomqtt stopped", time.monotonic(), self._discharge_without_data()
            )
        if self.ha is not None:
            self.ha.close()
        self.energy.save()
        self.charge_state.save(self.controller)
        if self.victron is not None:
            self._guarded("Victron", self.victron.repeat_last_word)  # the driver may have missed it (< 1.1 s)
        for link in (self.victron_link, self.link):
            if link is not None:
                link.stop(timeout=1.0)
        if self.database is not None:
            self.database.stop(timeout=1.0)
        if self.dry_run:
            shutil.rmtree(self.config.state_dir, ignore_errors=True)  # the temporary one
        if self.events is not None:
            self.events.close()
        self.console.close()

    # -- the console ---------------------------------------------------------
    def _ensure_console(self) -> bool:
        """Open and wake the console when needed; False when it is not usable yet."""
        if self.console.is_open:
            return True
        try:
            self.console.open()
            self.console.wake()
        except PortUnavailable as exc:
            self._note_open_failure(str(exc))
            return False
        except ConsoleError as exc:
            self.console.close()
            self._note_open_failure(str(exc))
            return False
        if not self._faults.recovered("console", "serial console %s is usable again", self.port):
            logger.info("serial console %s open at %d baud", self.port, self.console.baud)
        self._keep_baud()
        self._open_delay = 0.0
        return True

    def _recall_baud(self) -> Optional[int]:
        """``serial.baud: auto``: try the baud that answered last time first."""
        if not self.console.auto_baud:
            return None
        baud = remembered_baud(self.state_dir, self.port)
        self.console.prefer_baud(baud)
        return baud

    def _keep_baud(self) -> None:
        """Remember the baud that answered (auto), when it is not the one remembered already."""
        baud = self.console.baud
        if not self.console.auto_baud or baud == self._baud_kept or self.port.startswith("pylonsim:"):
            return
        try:
            remember_baud(self.state_dir, self.port, baud)
        except OSError as exc:
            logger.warning("cannot remember the console baud in %s (%s); the next start detects it again", self.state_dir, exc)
        self._baud_kept = baud

    def _note_open_failure(self, message: str) -> None:
        self.last_error = message
        self._faults.fault("console", logging.ERROR, "%s (retrying with a growing delay, at most a minute)", message)
        self._open_delay = min(max(self._open_delay * 2, self.config.serial.reading_freq), 60.0)

    # -- one poll ------------------------------------------------------------
    def poll(self, full: bool = False) -> Optional[PollOutcome]:
        """Read the bank's state (phase 1) and compute what the outputs need; None when the poll failed.

        ``full``: read everything first (cells, identity, details), as ``--once`` does.
        """
        started = time.monotonic()
        if not self._ensure_console():
            self._poll_failed(started)
            return None
        try:
            if full:
                bank = self.reader.read(full=True)
            else:
                bank = self.reader.read_state()
        except PollFailed as exc:
            self.last_error = str(exc)
            self._poll_failed(started)
            if self._failures_in_row >= 2 and self.console.is_open and not self.reader.stopping():
                self._rewake()
            return None
        now = time.monotonic()
        if self._refuse_high_voltage(bank):
            self._poll_failed(started)
            return None
        self.stats.record_poll(True, now - started, now)
        self._failures_in_row = 0
        self.polls_ok += 1
        summary = summarize_bank(bank, self.config.battery.cells)
        # Fresh means publishable: a bank whose every unit is unconfirmed this poll is not.
        fresh = summary.publishable
        if fresh:
            self.last_good = now
        elif summary.units_online == 0:
            self.last_error = "the console answers, but its pwr table shows no battery present"
        else:
            self.last_error = "the console's values could not be confirmed (line noise?)"
        limits = self.controller.update(bank, summary, now, fresh)
        self.last_limits = limits
        self._update_staleness(now)  # fresh data makes the bank online before anything is published
        return PollOutcome(bank, summary, limits, fresh, now, bank.poll_time or time.time())

    def _refuse_high_voltage(self, bank: Bank) -> bool:
        """A high-voltage stack is refused (logged once): its limits are not a 48 V bank's, so nothing is published."""
        stacks = bank.high_voltage_units()
        if not stacks:
            return False
        unit = stacks[0]
        self.last_error = (
            "battery %d is a high-voltage stack (%s V, %s cells), not a 48 V bank: not supported, "
            "nothing is published" % (unit.address, unit.row.voltage if unit.row else "?", unit.cell_count or "?")
        )
        self._faults.fault("high voltage", logging.ERROR, "%s", self.last_error)
        return True

    def _rewake(self) -> None:
        try:
            self.console.wake()
        except ConsoleError as exc:
            logger.debug("wake-up after failed polls: %s", exc)
            return
        self._keep_baud()

    def poll_budget(self) -> float:
        """Seconds a poll may spend on cells, identity and details after the bank's state.

        Long enough for the usual round, short enough that the next ``pwr`` comes well
        within ``stale_after``; what does not fit continues at the next poll.
        """
        serial = self.config.serial
        return min(serial.stale_after / 2.0, max(2.0 * serial.reading_freq, 5.0))

    def _discharge_without_data(self) -> Optional[float]:
        """The discharge limit the controller allows with no data (None before any decision)."""
        return self.last_limits.discharge_current if self.last_limits is not None else None

    def _poll_failed(self, now: float) -> None:
        # The controller sees every poll, failed ones too, so its holds and ramps count real time;
        # with no data it only ever lowers limits (nothing is published from a failed poll).
        empty = Bank(expected=self.reader.expected)
        self.last_limits = self.controller.update(empty, summarize_bank(empty), now, False)
        self.stats.record_poll(False, None, time.monotonic())
        self.polls_failed += 1
        self._failures_in_row += 1

    def _update_staleness(self, now: float) -> None:
        """Mark the bank offline / online when freshness changes (called by the loop and the watcher)."""
        with self._stale_lock:
            stale = self.last_good is None or now - self.last_good > self.config.serial.stale_after
            if stale == self.stale:
                return
            self.stale = stale
            self._announce_staleness(stale)  # under the lock: announcements keep their order

    def _watch_staleness(self, stop: threading.Event) -> None:
        """Once a second: a poll hanging on a silent console must not delay ``offline`` past ``stale_after``."""
        while not stop.wait(1.0):
            self._update_staleness(time.monotonic())

    def _announce_staleness(self, stale: bool) -> None:
        if stale:
            logger.warning(
                "no good data for %.0f s: telling the GX to stop charging, marking the bank offline (%s)",
                self.config.serial.stale_after,
                self.last_error or "no reply",
            )
            self._say_last_word()
        else:
            logger.info("fresh data again: bank online")
        if self.link is not None:
            self.link.set_available(not stale)

    def _say_last_word(self) -> None:
        """While stale: the Victron topics say "stop charging" (again only when the word changes)."""
        if self.victron is not None:
            reason = "no data from the battery console for %.0f s" % self.config.serial.stale_after
            self._guarded("Victron", self.victron.last_word, reason, time.monotonic(), self._discharge_without_data())

    def publish(self, outcome: PollOutcome) -> None:
        """Hand one poll's results to every output, Victron first; a failing output never stops the others."""
        self._guarded("energy counters", self._update_energy, outcome)
        if self.victron is not None and outcome.fresh:
            with self._stale_lock:  # never after the staleness watcher has said the last word
                now = time.monotonic()
                if not self.stale and now - outcome.now <= self.config.serial.stale_after:
                    # the one-per-second rule counts from the moment of sending, not the poll's start
                    self._guarded(
                        "Victron",
                        self.victron.update,
                        outcome.summary,
                        outcome.limits,
                        outcome.summary.units_offline,
                        outcome.summary.cells_per_battery,
                        now,
                        self.energy.snapshot(),
                    )
        self._guarded(
            "charge state", self.charge_state.save_if_due, self.controller, outcome.wall_time, self.config.state_save_interval
        )
        changes = []
        if self.events is not None:
            changes = self._guarded("events", self.events.update, outcome.bank, outcome.wall_time) or []
        if self.database is not None:
            self._guarded("database", self.database.record, outcome.bank, outcome.summary, outcome.wall_time, changes)
        if self.status_file is not None:
            self._guarded("status file", self._write_status, outcome)
        if self.ha is not None:
            self._guarded(
                "Home Assistant",
                self.ha.update,
                outcome.bank,
                outcome.summary,
                outcome.limits,
                self.energy.snapshot(),
                outcome.wall_time,
            )

    def _update_energy(self, outcome: PollOutcome) -> None:
        self.energy.update(outcome.summary, outcome.wall_time, bank=outcome.bank)
        self.energy.save_if_due(outcome.wall_time, self.config.state_save_interval)

    def _write_status(self, outcome: PollOutcome) -> None:
        self.status_file.write(
            build_status(
                outcome.bank,
                outcome.summary,
                outcome.limits,
                self.stats.as_dict(time.monotonic()),
                self.config.cells.level,
                self.events,
            )
        )

    def _guarded(self, name: str, action: Callable[..., Any], *args: Any) -> Any:
        """Run one output; a bug in it is logged (with its traceback, once) instead of ending the daemon."""
        try:
            result = action(*args)
        except Exception:
            self._failed_outputs.fault(name, logging.ERROR, "%s output failed; the other outputs go on", name, exc_info=True)
            return None
        self._failed_outputs.recovered(name, "%s output works again", name)
        return result

    def diagnostics(self, now: float) -> Dict[str, Any]:
        """The loop's health, for the retained ``<topic_base>/diagnostics`` message."""
        document = self.stats.as_dict(now, self.events.counts() if self.events is not None else None)
        document.update(
            {
                "port": self.port,
                "broker": self.link.broker if self.link is not None else None,
                "stale": self.stale,
                "last_error": self.last_error or None,
                "messages_sent": self.link.messages_sent if self.link is not None else 0,
                "mqtt_connections": self.link.connections if self.link is not None else 0,
                "charge_control": _limits_text(self.last_limits),
            }
        )
        if self.database is not None:
            document["database"] = self.database.state()
        return document

    def status_line(self) -> str:
        """One line for ``systemctl status``: port, broker, batteries, messages, last error."""
        units = sorted(a for a, b in self.reader.batteries.items() if b.present)
        return "%s; %s; batteries %s; %d messages sent; last error: %s" % (
            "stale" if self.stale else "polling %s" % self.port,
            ("MQTT %s %s" % ("connected to" if self.link.connected else "waiting for", self.link.broker))
            if self.link is not None
            else "MQTT off",
            ",".join(str(a) for a in units) or "none",
            self.link.messages_sent if self.link is not None else 0,
            self.last_error or "none",
        )

    def _report(self, now: float) -> None:
        """Diagnostics: systemd's status line every poll, retained on MQTT once a minute, the log once an hour."""
        notify_status(self.status_line())
        if self.link is not None and (self._diagnostics_sent is None or now - self._diagnostics_sent >= 60):
            topic = "%s/diagnostics" % self.config.mqtt.topic_base
            if self.link.publish(topic, json.dumps(self.diagnostics(now), sort_keys=True, default=str), qos=1, retain=True):
                self._diagnostics_sent = now
        if self.stats.should_log(now, 3600):
            logger.info(
                "status: %s; MQTT %s, %d messages sent; last error: %s",
                self.stats.summary(now),
                "connected" if self.link is not None and self.link.connected else "not connected",
                self.link.messages_sent if self.link is not None else 0,
                self.last_error or "none",
            )

    # -- the loop --------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        self.reader.stopping = stop.is_set
        self.console.interrupted = stop.is_set
        self.energy.load()
        self.charge_state.load(self.controller)
        self.start_outputs()
        logger.info(
            "polling %s every %.1f s; MQTT %s",
            self.port,
            self.config.serial.reading_freq,
            self.link.broker if self.link else "off",
        )
        watcher = threading.Thread(target=self._watch_staleness, args=(stop,), name="staleness", daemon=True)
        watcher.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                outcome = self.poll()
                self._update_staleness(time.monotonic())  # fresh again before publishing
                if outcome is not None:
                    self.publish(outcome)
                    self.reader.read_more(deadline=started + self.poll_budget())
                elif self.stale:
                    self._say_last_word()  # the controller's no-data limits may have moved on
                self._report(time.monotonic())
                delay = self.config.serial.reading_freq
                if not self.console.is_open:
                    delay = max(delay, self._open_delay)
                stop.wait(max(0.0, delay - (time.monotonic() - started)))
        finally:
            self.stop_outputs()
            logger.info("stopped after %d good and %d failed polls", self.polls_ok, self.polls_failed)
        return 0

    # -- --once ----------------------------------------------------------------
    def once(self) -> Dict[str, Any]:
        """Poll once (every unit's cells and identity) and return the would-be payloads."""
        outcome = self.poll(full=True)
        self.console.close()
        if outcome is None:
            raise PollFailed(self.last_error or "the console gave no trustworthy reply")
        bank, summary = outcome.bank, outcome.summary
        payload = bank_payload(summary, outcome.limits, summary.cells_per_battery, summary.units_offline)
        batteries: List[Dict[str, Any]] = []
        for unit in outcome.summary.units:  # in address order, as published on battery_<N>
            unit_json = unit_payload(unit, outcome.limits)
            if unit_json is not None:
                batteries.append(unit_json)
        logger.info("units present: %s; missing: %s", [u.address for u in outcome.summary.units], list(bank.missing) or "none")
        self.once_complete = bank.complete and payload is not None
        return {"bank": payload, "batteries": batteries}
