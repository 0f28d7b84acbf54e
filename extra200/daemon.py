"""The polling loop: read the bank, derive, limit, publish; survive everything.

One thread does the work in a fixed rhythm (``serial.reading_freq``),
sleeping on an event between polls so an idle daemon uses no CPU and a stop
request ends the sleep at once.  Failures are logged once when they start
and once when they end:

* the serial port cannot be opened: retried with a growing delay (up to a minute);
* a poll fails (silent console, garbage): the console is woken again after
  two failures in a row; after ``serial.stale_after`` seconds without a good
  poll the data counts as stale: nothing is published for the bank and the
  availability topic says ``offline``, so Victron's driver times out and Home
  Assistant shows the values as unavailable instead of old numbers;
* the broker is away: the MQTT link reconnects by itself; polling goes on.
"""

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set

from .charge_limits import ChargeController, ChargeLimits
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
    now: float  # monotonic
    wall_time: float


def _print_message(topic: str, payload: str) -> bool:
    sys.stdout.write("%s %s\n" % (topic, payload))
    sys.stdout.flush()
    return True


def _limits_text(limits: Optional[ChargeLimits]) -> Optional[Dict[str, Any]]:
    """The charge decision in readable form: each limit and the rule that set it."""
    if limits is None:
        return None
    return {
        "mode": limits.mode,
        "charge_voltage": limits.charge_voltage, "voltage_reason": limits.voltage_reason,
        "charge_current": limits.charge_current, "charge_reason": limits.charge_reason,
        "discharge_current": limits.discharge_current, "discharge_reason": limits.discharge_reason,
    }


class Daemon:
    """Owns the console, the MQTT link and the outputs; ``run`` loops until ``stop`` is set."""

    def __init__(self, config: Config, port: str, dry_run: bool = False) -> None:
        """``config`` is the effective configuration (command-line overrides applied).

        Raises ``CatalogueError`` for a broken events catalogue file (a configuration error).
        """
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
        self.reader = BankReader(self.console, config.serial, config.battery)
        self.controller = ChargeController(config.charge, config.battery)
        self.link: Optional[MqttLink] = None
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
        self._failed_outputs: Set[str] = set()
        self.last_good: Optional[float] = None
        self.stale = True
        self.polls_ok = 0
        self.polls_failed = 0
        self._failures_in_row = 0
        self._open_delay = 0.0
        self._open_logged = False
        self.last_error = ""
        self.once_complete = False
        self._cell_count_warned = False

    # -- set-up --------------------------------------------------------------
    def start_outputs(self) -> None:
        if self.config.database.enabled:
            self.database = DatabaseRecorder(self.config.database, spool_directory(self.config),
                                             self.config.cells.level)
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
        self.victron = VictronPublisher(self._publish_json, mqtt.topic_base, mqtt.per_battery_topics)
        if self.config.homeassistant.enabled:
            self.ha = HomeAssistantPublisher(self.config, self.link.publish, self.link.subscribe,
                                             self.link.availability_topic, self.state_dir,
                                             event_text=self._event_text)
            self.link.add_connect_hook(self.ha.on_connect)
            self.ha.start()
        self.link.start()

    def _event_text(self, battery: Any) -> str:
        if self.events is None:
            return "Events monitoring off"
        return self.events.active_text(battery.address, level="warning") or "No events"

    def _publish_json(self, topic: str, payload: str) -> bool:
        return self.link.publish(topic, payload) if self.link is not None else False

    def stop_outputs(self) -> None:
        if self.ha is not None:
            self.ha.close()
        self.energy.save()
        if self.link is not None:
            self.link.stop()
        if self.database is not None:
            self.database.stop(timeout=2.0)
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
        if self._open_logged:
            logger.info("serial console %s is usable again", self.port)
        else:
            logger.info("serial console %s open at %d baud", self.port, self.config.serial.baud)
        self._open_logged = False
        self._open_delay = 0.0
        return True

    def _note_open_failure(self, message: str) -> None:
        self.last_error = message
        if not self._open_logged:
            logger.error("%s (retrying with a growing delay, at most a minute)", message)
            self._open_logged = True
        self._open_delay = min(max(self._open_delay * 2, self.config.serial.reading_freq), 60.0)

    # -- one poll ------------------------------------------------------------
    def poll(self, full: bool = False) -> Optional[PollOutcome]:
        """Read the bank once and compute everything the outputs need; None when the poll failed."""
        now = time.monotonic()
        if not self._ensure_console():
            self._poll_failed(now)
            return None
        try:
            bank = self.reader.read(full=full)
            self.stats.record_poll(True, time.monotonic() - now, time.monotonic())
        except PollFailed as exc:
            self.last_error = str(exc)
            self._poll_failed(now)
            if self._failures_in_row >= 2 and self.console.is_open and not self.reader.stopping():
                self._rewake()
            return None
        except ConsoleError as exc:  # the device vanished mid-poll
            self.last_error = str(exc)
            self.console.close()
            self._poll_failed(now)
            return None
        self._failures_in_row = 0
        self.polls_ok += 1
        self._check_cell_count(bank)
        summary = summarize_bank(bank)
        fresh = summary.units_online > 0
        if fresh:
            self.last_good = now
        else:
            self.last_error = "the console answers, but its pwr table shows no battery present"
        limits = self.controller.update(bank, summary, now, fresh)
        self.last_limits = limits
        return PollOutcome(bank, summary, limits, fresh, now, bank.poll_time or time.time())

    def _check_cell_count(self, bank: Bank) -> None:
        """Warn once when the console reports another cell count than ``battery.num_cells``.

        The charge limits are computed for the configured count, so a 16-cell
        bank configured as 15 cells is charged too low (safe, but never full).
        """
        configured = self.config.battery.num_cells
        counts = {b.cell_count for b in bank.present() if b.cell_count}
        wrong = sorted(c for c in counts if c != configured)
        if wrong and not self._cell_count_warned:
            logger.warning("the console reports %s cells per battery but battery.num_cells is %d: "
                           "set battery.num_cells (and battery.max_charge_voltage) to match", wrong, configured)
            self._cell_count_warned = True

    def _rewake(self) -> None:
        try:
            self.console.wake()
        except ConsoleError as exc:
            logger.debug("wake-up after failed polls: %s", exc)

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
            logger.warning("no good data for %.0f s: marking the bank offline and pausing its topic (%s)",
                           self.config.serial.stale_after, self.last_error or "no reply")
        else:
            logger.info("fresh data again: bank online")
        if self.link is not None:
            self.link.set_available(not stale)

    def publish(self, outcome: PollOutcome) -> None:
        """Hand one poll's results to every output, Victron first; a failing output never stops the others."""
        if self.victron is not None and outcome.fresh:
            # the one-per-second rule counts from the moment of sending, not the poll's start
            self._guarded("Victron", self.victron.update, outcome.summary, outcome.limits, len(outcome.bank.missing),
                          self._cells_per_battery(outcome.bank), time.monotonic())
        self._guarded("energy counters", self._update_energy, outcome)
        changes = []
        if self.events is not None:
            changes = self._guarded("events", self.events.update, outcome.bank, outcome.wall_time) or []
        if self.database is not None:
            self._guarded("database", self.database.record, outcome.bank, outcome.summary, outcome.wall_time, changes)
        if self.status_file is not None:
            self._guarded("status file", self._write_status, outcome)
        if self.ha is not None:
            self._guarded("Home Assistant", self.ha.update, outcome.bank, outcome.summary, outcome.limits,
                          self.energy.snapshot(), outcome.wall_time)

    def _update_energy(self, outcome: PollOutcome) -> None:
        self.energy.update(outcome.summary, outcome.wall_time, bank=outcome.bank)
        self.energy.save_if_due(outcome.wall_time, self.config.state_save_interval)

    def _write_status(self, outcome: PollOutcome) -> None:
        self.status_file.write(build_status(outcome.bank, outcome.summary, outcome.limits,
                                            self.stats.as_dict(time.monotonic()), self.config.cells.level,
                                            self.events))

    def _guarded(self, name: str, action: Callable[..., Any], *args: Any) -> Any:
        """Run one output; a bug in it is logged (with its traceback, once) instead of ending the daemon."""
        try:
            result = action(*args)
        except Exception:
            if name not in self._failed_outputs:
                logger.exception("%s output failed; the other outputs go on", name)
                self._failed_outputs.add(name)
            return None
        if name in self._failed_outputs:
            logger.info("%s output works again", name)
            self._failed_outputs.discard(name)
        return result

    def diagnostics(self, now: float) -> Dict[str, Any]:
        """The loop's health, for the retained ``<topic_base>/diagnostics`` message."""
        document = self.stats.as_dict(now, self.events.counts() if self.events is not None else None)
        document.update({
            "port": self.port,
            "broker": self.link.broker if self.link is not None else None,
            "stale": self.stale,
            "last_error": self.last_error or None,
            "messages_sent": self.link.messages_sent if self.link is not None else 0,
            "mqtt_connections": self.link.connections if self.link is not None else 0,
            "charge_control": _limits_text(self.last_limits),
        })
        if self.database is not None:
            document["database"] = self.database.state()
        return document

    def status_line(self) -> str:
        """One line for ``systemctl status``: port, broker, batteries, messages, last error."""
        units = sorted(a for a, b in self.reader.batteries.items() if b.present)
        return "%s; %s; batteries %s; %d messages sent; last error: %s" % (
            "stale" if self.stale else "polling %s" % self.port,
            ("MQTT %s %s" % ("connected to" if self.link.connected else "waiting for", self.link.broker))
            if self.link is not None else "MQTT off",
            ",".join(str(a) for a in units) or "none", self.link.messages_sent if self.link is not None else 0,
            self.last_error or "none")

    def _report(self, now: float) -> None:
        """Diagnostics: systemd's status line every poll, retained on MQTT once a minute, the log once an hour."""
        notify_status(self.status_line())
        if self.link is not None and (self._diagnostics_sent is None or now - self._diagnostics_sent >= 60):
            topic = "%s/diagnostics" % self.config.mqtt.topic_base
            if self.link.publish(topic, json.dumps(self.diagnostics(now), sort_keys=True, default=str), qos=1,
                                 retain=True):
                self._diagnostics_sent = now
        if self.stats.should_log(now, 3600):
            logger.info("status: %s; MQTT %s, %d messages sent; last error: %s", self.stats.summary(now),
                        "connected" if self.link is not None and self.link.connected else "not connected",
                        self.link.messages_sent if self.link is not None else 0, self.last_error or "none")

    def _cells_per_battery(self, bank: Bank) -> int:
        counts = [b.cell_count for b in bank.present() if b.cell_count]
        return max(counts) if counts else self.config.battery.num_cells

    # -- the loop --------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        self.reader.stopping = stop.is_set
        self.energy.load()
        self.start_outputs()
        logger.info("polling %s every %.1f s; MQTT %s", self.port, self.config.serial.reading_freq,
                    self.link.broker if self.link else "off")
        watcher = threading.Thread(target=self._watch_staleness, args=(stop,), name="staleness", daemon=True)
        watcher.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                outcome = self.poll()
                if outcome is not None:
                    self.publish(outcome)
                self._update_staleness(time.monotonic())
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
        bank = outcome.bank
        payload = bank_payload(outcome.summary, outcome.limits, self._cells_per_battery(bank), len(bank.missing))
        batteries: List[Dict[str, Any]] = []
        for unit in outcome.summary.units:  # in address order, as published on battery_<N>
            unit_json = unit_payload(unit, outcome.limits, outcome.summary.units_online, with_cells=True)
            if unit_json is not None:
                batteries.append(unit_json)
        logger.info("units present: %s; missing: %s", [u.address for u in outcome.summary.units],
                    list(bank.missing) or "none")
        self.once_complete = bank.complete and payload is not None
        return {"bank": payload, "batteries": batteries}
