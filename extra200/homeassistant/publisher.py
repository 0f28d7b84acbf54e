"""The Home Assistant publisher: what to announce, remove and send after each poll, and when.

The stateful part of the Home Assistant output.  Each poll it builds the
devices (the bank, and each battery once its identity is read), then decides
per device: a discovery config when new or changed (components that went are
reduced to ``{"p": <platform>}``; a device that went gets an empty retained
config), its availability, and its JSON state, held back a second after a new
config (Home Assistant subscribes in batches and would drop it).  When Home
Assistant announces ``online`` on its status topic, or after a reconnect,
every config, availability and recent state is sent again, from a timer off
the poll and paho threads.  What it keeps about one device lives in one
``_Tracked`` entry; what was announced is persisted by ``record.RecordFile``.

Everything leaves through the injected ``publish`` function, the time comes
from the injected ``clock`` and the delayed work from ``start_timer``, so the
decisions can be tested in process.
"""

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from ..config import Config
from ..derive import ASSUMED_CELLS, BankSummary
from ..energy import EMPTY_SNAPSHOT, EnergySnapshot
from ..model import Bank, Battery
from .discovery import (
    PolledDevice,
    automatic_bank_id,
    automatic_bank_name,
    bank_device,
    bank_key,
    battery_device,
    battery_key,
    device_availability_topic,
    discovery_payload,
    discovery_topic,
    expire_after_for,
    state_topic,
)
from .entities import BANK_ENTITIES, Entity, battery_entities, state_values
from .record import Announced, RecordFile
from .values import BankView, UnitView, default_event_text

# The log lines keep the name they have always had (the log format shows it).
logger = logging.getLogger(__package__)

CONFIG_SETTLE = 1.0  # seconds between a new discovery config and the first state for it
IDENTITY_WAIT_POLLS = 3  # polls an automatic bank id waits for the master's barcode before using the port
# Polls a battery waits to be announced until its identity (info) has been read: announced by address
# first, it would be renamed by barcode a few polls later, leaving a removed device behind in HA.
UNIT_IDENTITY_WAIT_POLLS = 10

PublishFn = Callable[..., bool]  # publish(topic, payload, qos=0, retain=False) -> bool
SubscribeFn = Callable[[str, Callable[[str, bytes], None]], None]
EventText = Callable[[Battery], Optional[str]]
StartTimer = Callable[[float, Callable[[], None]], Any]  # (delay, action) -> a started timer with cancel()


def thread_timer(delay: float, action: Callable[[], None]) -> threading.Timer:
    """Runs ``action`` after ``delay`` seconds on a daemon thread (the publisher's timer)."""
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


class _Timer:
    """Runs the publisher's deferred work once, at the earliest time asked for; never after ``close``."""

    def __init__(self, action: Callable[[], None], clock: Callable[[], float], start_timer: StartTimer) -> None:
        self._action = action
        self._clock = clock
        self._start_timer = start_timer
        self._lock = threading.Lock()
        self._timer: Optional[Any] = None
        self._due = 0.0
        self._closed = False

    def schedule(self, delay: float) -> None:
        with self._lock:
            if self._closed:
                return
            due = self._clock() + delay
            if self._timer is not None and self._due <= due:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._start_timer(max(delay, 0.0), self._run)
            self._due = due

    def _run(self) -> None:
        with self._lock:
            self._timer = None
        self._action()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class _State(NamedTuple):
    """One device's state message, and the clock time it was made."""

    topic: str
    payload: str
    stamp: float


@dataclass
class _Tracked:
    """All the publisher keeps about one device between polls."""

    announced: Optional[Announced] = None  # what was announced (persisted), None before
    config: Optional[Tuple[str, str]] = None  # the discovery (topic, payload) this process sent
    signature: str = ""  # what that payload was built from
    hold_until: float = 0.0  # clock time from which its states may flow
    last_state: Optional[_State] = None
    pending: Optional[_State] = None  # a state held back until hold_until
    absent_polls: int = 0  # polls in a row an announced device was not seen


class HomeAssistantPublisher:
    """Announces, updates and removes the Home Assistant devices of one bank.

    Wiring (the daemon): ``start()`` once (loads the record, subscribes to Home
    Assistant's status topic); ``on_connect`` as an MQTT connect hook;
    ``update(...)`` after every good poll, on the polling thread; ``close()`` on
    shutdown.  Thread-safe: the status handler and the connect hook only set a
    flag and arm a timer that does the work off paho's thread.
    """

    def __init__(
        self,
        config: Config,
        publish: PublishFn,
        subscribe: Optional[SubscribeFn],
        availability_topic: str,
        state_dir: Optional[str],
        event_text: Optional[EventText] = None,
        clock: Callable[[], float] = time.monotonic,
        start_timer: StartTimer = thread_timer,
    ) -> None:
        self._config = config
        self._ha = config.homeassistant
        self._publish_fn = publish
        self._subscribe_fn = subscribe
        self._availability = availability_topic
        self._record_file = RecordFile(state_dir, clock)
        self._event_text = event_text or default_event_text
        self._clock = clock
        self._expire_after = expire_after_for(config)
        self._topic_base = config.mqtt.topic_base
        self._level = config.cells.level
        self._status_topic = self._ha.status_topic or "%s/status" % self._ha.discovery_prefix
        self._discovery = self._ha.discovery

        self._lock = threading.RLock()
        self._devices: Dict[str, _Tracked] = {}  # device key -> what is kept about it
        self._entities: Dict[Tuple[str, int], List[Entity]] = {}  # (level, cells) -> a battery's entities
        self._sent_availability: Dict[str, str] = {}  # topic -> payload
        self._bank_id = ""  # settled at the first update (_resolve_bank)
        self._bank_name = ""
        self._recorded_bank_id = ""  # the id an earlier run announced under
        self._identity_polls = 0
        self._unit_identity_polls: Dict[int, int] = {}  # per address, polls waited for its identity
        self._resend = False  # set from paho's thread: Home Assistant came online / we reconnected
        self._timer = _Timer(self._flush, clock, start_timer)  # re-sends and held states

    # -- life cycle ----------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return self._status_topic

    @property
    def expire_after(self) -> int:
        return self._expire_after

    def start(self) -> None:
        """Load the record of earlier announcements and listen for Home Assistant's birth message."""
        self._load_record()
        if self._subscribe_fn is not None:
            self._subscribe_fn(self._status_topic, self._on_ha_status)

    def on_connect(self) -> None:
        """MQTT connect hook: the broker may have lost retained configs (restart without persistence)."""
        self._resend = True
        self._timer.schedule(0.5)

    def close(self) -> None:
        self._timer.close()
        with self._lock:
            self._save_record(force=True)  # with the latest "last seen" times

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        """Runs in paho's thread: only note it; the timer thread re-sends."""
        if payload.strip().lower() == b"online":
            logger.info("Home Assistant is online (%s): re-sending discovery, availability and states", topic)
            self._resend = True
            self._timer.schedule(random.uniform(0.1, 1.0))  # spreads the load when many devices answer at once

    # -- the poll ----------------------------------------------------------------
    def update(self, bank: Bank, summary: BankSummary, limits: Any, energy: Optional[EnergySnapshot], now: float) -> int:
        """Announce what is new, remove what is gone, and publish one state per device; returns messages sent.

        ``now`` is wall-clock time (``time.time()``); it dates the record used to
        remove batteries absent for longer than ``homeassistant.remove_after``.
        """
        with self._lock:
            sent = 0
            if not self._discovery and self._announced():
                sent += self._clear_records()  # switched to the YAML file: no entity twice
            if self._resend:
                sent += self._resend_all()
            if not self._resolve_bank(bank):
                return sent
            devices = self._build(bank, summary, limits, energy or EMPTY_SNAPSHOT)
            sent += self._reconcile(devices, now)
            self._save_record()
            return sent

    def remove_all(self) -> int:
        """Clear every device this daemon ever announced, as recorded in the state directory (a tool for
        uninstalling; with ``homeassistant.discovery: false`` the next ``update`` does this by itself)."""
        with self._lock:
            if not self._announced():
                self._load_record()
            return self._clear_records()

    def _clear_records(self) -> int:
        sent = 0
        for key, announced in self._announced().items():
            if self._publish(announced.topic, "", qos=1, retain=True):
                logger.info("Home Assistant: removed device %s (discovery is off)", key)
                sent += 1
                self._forget(key)
        self._save_record(force=True)
        return sent

    # -- what is kept per device ------------------------------------------------------
    def _announced(self) -> Dict[str, Announced]:
        """What was announced, by device key (in the order first announced or recorded)."""
        return {key: tracked.announced for key, tracked in self._devices.items() if tracked.announced is not None}

    def _tracked(self, key: str) -> _Tracked:
        tracked = self._devices.get(key)
        if tracked is None:
            tracked = self._devices[key] = _Tracked()
        return tracked

    def _forget(self, key: str) -> None:
        self._devices.pop(key, None)
        self._record_file.dirty = True

    # -- building the devices ------------------------------------------------------
    def _cells_of(self, battery: Battery) -> int:
        # 15 only until the console tells (display: the cell entities; never a limit), as derive's stored energy
        return battery.cell_count or self._config.battery.cells or ASSUMED_CELLS

    def _identity(self, battery: Battery) -> Optional[str]:
        """The barcode, or before ``info`` was first read, the one last recorded at this address."""
        if battery.barcode:
            return battery.barcode
        if battery.info_time is None:
            recorded = [a for a in self._announced().values() if a.address == battery.address and a.barcode]
            if recorded:
                return max(recorded, key=lambda a: a.last_seen).barcode
        return None

    def _resolve_bank(self, bank: Bank) -> bool:
        """Settle the bank's id and name once; False while an automatic id still waits for the barcode.

        ``homeassistant.bank_id`` when set; else the id recorded by an earlier run (so an upgrade
        keeps every unique id, and the energy sensors their statistics); else one from the
        master battery's barcode (the port when no barcode comes within a few polls).
        """
        if self._bank_id:
            return True
        master = min(bank.present(), key=lambda b: b.address, default=None)
        bank_id = self._ha.bank_id or self._recorded_bank_id
        if not bank_id:
            if master is None:
                return False  # no battery has answered yet: nothing to name the bank after
            barcode = master.barcode
            if barcode is None and self._identity_polls < IDENTITY_WAIT_POLLS:
                self._identity_polls += 1
                return False
            bank_id = automatic_bank_id(barcode, self._config.serial.port)
            logger.info("Home Assistant: bank id %s (set homeassistant.bank_id to choose one)", bank_id)
        manufacturer = master.info.manufacturer if master is not None and master.info is not None else None
        self._bank_id = bank_id
        self._bank_name = self._ha.bank_name or automatic_bank_name(bank_id, manufacturer)
        self._record_file.dirty = True
        return True

    def _build(self, bank: Bank, summary: BankSummary, limits: Any, energy: EnergySnapshot) -> List[PolledDevice]:
        bank_id = self._bank_id
        units = {u.address: u for u in summary.units}
        devices: List[PolledDevice] = []
        used: Dict[str, int] = {}
        for battery in bank.present():
            unit = units.get(battery.address)
            if unit is None:
                continue
            cells = self._cells_of(battery)
            barcode = self._identity(battery)
            if barcode is None and battery.info_time is None and not self._waited_for_identity(battery.address):
                continue
            key = battery_key(bank_id, battery.address, barcode)
            if key in used:
                logger.warning(
                    "Home Assistant: batteries %d and %d report the same barcode %s; using addresses",
                    used[key],
                    battery.address,
                    barcode,
                )
                barcode = None
                key = battery_key(bank_id, battery.address, None)
            used[key] = battery.address
            view = UnitView(battery, unit, energy.unit(battery.address), self._event_text(battery))
            entities = self._entities.get((self._level, cells))
            if entities is None:
                entities = self._entities[(self._level, cells)] = battery_entities(self._level, cells)
            device = battery_device(bank_id, key, battery, battery.address, self._bank_name)
            devices.append(PolledDevice(key, battery.address, barcode, device, entities, state_values(entities, view), True))
        bank_view = BankView(summary, limits, energy.bank)
        devices.insert(
            0,
            PolledDevice(
                bank_key(bank_id),
                None,
                None,
                bank_device(bank_id, self._bank_name, True),
                list(BANK_ENTITIES),
                state_values(BANK_ENTITIES, bank_view),
                summary.units_online > 0,
            ),
        )
        return devices

    def _waited_for_identity(self, address: int) -> bool:
        waited = self._unit_identity_polls.get(address, 0)
        self._unit_identity_polls[address] = waited + 1
        return waited >= UNIT_IDENTITY_WAIT_POLLS

    # -- publishing ------------------------------------------------------------------
    def _publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        try:
            return bool(self._publish_fn(topic, payload, qos=qos, retain=retain))
        except Exception:  # a broken connection object must not stop the poll
            logger.exception("Home Assistant: publishing to %s failed", topic)
            return False

    def _reconcile(self, devices: List[PolledDevice], now: float) -> int:
        sent = 0
        wanted = {d.key: d for d in devices}
        occupied = {d.address for d in devices if d.address is not None}
        availability: Dict[str, str] = {}
        for key, announced in self._announced().items():
            if key in wanted:
                continue
            tracked = self._devices[key]
            if self._gone(key, announced, tracked.absent_polls, occupied, now):
                if self._publish(announced.topic, "", qos=1, retain=True):
                    logger.info("Home Assistant: removed device %s (battery %s is gone)", key, announced.address)
                    self._forget(key)
                    sent += 1
                continue
            tracked.absent_polls += 1
            availability[device_availability_topic(self._topic_base, announced.address)] = "offline"
        for device in devices:
            seen = self._devices.get(device.key)
            if seen is not None:
                seen.absent_polls = 0
            sent += self._announce(device, now)
            topic = device_availability_topic(self._topic_base, device.address)
            if device.available or availability.get(topic) != "online":
                availability[topic] = "online" if device.available else "offline"
        for topic, payload in sorted(availability.items()):
            if self._sent_availability.get(topic) != payload and self._publish(topic, payload, qos=1, retain=True):
                self._sent_availability[topic] = payload
                sent += 1
        for device in devices:
            if device.available and (self._config_sent(device.key) or not self._discovery):
                sent += self._send_state(device)
        return sent

    def _config_sent(self, key: str) -> bool:
        tracked = self._devices.get(key)
        return tracked is not None and tracked.config is not None

    def _gone(self, key: str, announced: Announced, absent_polls: int, occupied: Iterable[int], now: float) -> bool:
        """Whether a device not seen this poll is to be removed (else it is only unavailable)."""
        bank_id = self._bank_id
        if not key.startswith(bank_id + "_"):
            return True  # announced under an earlier bank_id
        if announced.address is None:
            return key != bank_key(bank_id)
        configured = self._config.battery.addresses
        if configured and announced.address not in configured:
            return True  # no longer part of the configured bank
        if announced.barcode is None and announced.address in occupied:
            return True  # the unit at this address is now known by its barcode
        if configured:
            return False  # a configured unit that is silent stays, unavailable
        # Auto-detected bank: gone after remove_after (also counting time the daemon was down),
        # but never on a single poll's glitch after a restart.
        return now - announced.last_seen > self._ha.remove_after and absent_polls >= 2

    def _announce(self, device: PolledDevice, now: float) -> int:
        """Send the device's config when it is new or changed; 1 when sent."""
        if not self._discovery:
            return 0
        topic = discovery_topic(self._ha.discovery_prefix, device.key)
        tracked = self._devices.get(device.key)
        announced = tracked.announced if tracked is not None else None
        sent = 0
        if announced is not None and announced.topic != topic:  # the discovery prefix changed
            if not self._publish(announced.topic, "", qos=1, retain=True):
                return 0
            sent += 1
            self._forget(device.key)
            tracked = announced = None
        before = set(announced.components) | set(announced.removed) if announced is not None else set()
        keep = [e for e in device.entities if not e.optional or device.values.get(e.key) is not None or e.key in before]
        kept = {e.key for e in keep}
        removed = sorted(before - kept)
        # A component is removed on the platform it was announced on (an older version's text
        # sensors "alarms", "charge_allowed" are now binary sensors under other keys).
        platforms = {k: p for k, p in (announced.platforms.items() if announced is not None else ()) if k in removed}
        platforms.update((e.key, e.platform) for e in keep if e.platform != "sensor")
        if announced is not None:
            announced.last_seen = now
        # What the payload is made of, cheap to compare: a 16-unit bank at cell level high has
        # almost a megabyte of configs, not to be rebuilt on every poll of a small GX device.
        signature = json.dumps([device.device, sorted(kept), removed, device.address, platforms], sort_keys=True)
        previous = tracked.config if tracked is not None else None
        if previous is not None and tracked is not None and tracked.signature == signature:
            return sent
        payload = json.dumps(
            discovery_payload(
                device, keep, removed, platforms, self._bank_id, self._topic_base, self._availability, self._expire_after
            ),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        if not self._publish(topic, payload, qos=1, retain=True):
            return sent
        if previous is None and announced is None:
            logger.info("Home Assistant: announced %s (%d entities)", device.key, len(keep))
        elif removed and (announced is None or removed != announced.removed):
            logger.info("Home Assistant: %s reconfigured, %d entities removed", device.key, len(removed))
        tracked = self._tracked(device.key)
        tracked.signature = signature
        tracked.config = (topic, payload)
        tracked.hold_until = self._clock() + CONFIG_SETTLE
        tracked.announced = Announced(topic, device.address, device.barcode, sorted(kept), removed, now, platforms)
        self._record_file.dirty = True
        return sent + 1

    def _send_state(self, device: PolledDevice) -> int:
        topic = state_topic(self._topic_base, device.address)
        payload = json.dumps(device.values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        tracked = self._tracked(device.key)
        state = tracked.last_state = _State(topic, payload, self._clock())
        if state.stamp < tracked.hold_until:
            tracked.pending = state
            self._timer.schedule(tracked.hold_until - state.stamp)
            return 0
        tracked.pending = None
        return 1 if self._publish(topic, payload) else 0

    def _resend_all(self) -> int:
        """Home Assistant restarted (or we reconnected): every config, availability, then the states."""
        self._resend = False
        sent = 0
        for key in sorted(self._devices):
            tracked = self._devices[key]
            if tracked.config is None:
                continue
            topic, payload = tracked.config
            if self._publish(topic, payload, qos=1, retain=True):
                sent += 1
                tracked.hold_until = self._clock() + CONFIG_SETTLE
            else:
                self._resend = True  # not connected: try again on the next connect or poll
        for topic, payload in sorted(self._sent_availability.items()):
            if self._publish(topic, payload, qos=1, retain=True):
                sent += 1
        now = self._clock()
        for tracked in self._devices.values():
            state = tracked.last_state
            if state is not None and now - state.stamp <= self._expire_after:
                tracked.pending = state  # never revive values older than Home Assistant would show
        if any(tracked.pending is not None for tracked in self._devices.values()):
            self._timer.schedule(CONFIG_SETTLE)
        return sent

    # -- the timer's work: re-sends and held states, off the poll and paho threads -------------
    def _flush(self) -> None:
        with self._lock:
            if self._resend:
                self._resend_all()
            now = self._clock()
            waiting: List[float] = []
            for tracked in self._devices.values():
                state = tracked.pending
                if state is None:
                    continue
                if now < tracked.hold_until:
                    waiting.append(tracked.hold_until - now)
                    continue
                tracked.pending = None
                if now - state.stamp <= self._expire_after:
                    self._publish(state.topic, state.payload)
            if waiting:
                self._timer.schedule(min(waiting))

    # -- the record --------------------------------------------------------------------
    def _load_record(self) -> None:
        loaded = self._record_file.load()
        if loaded is None:
            return
        devices, recorded = loaded
        with self._lock:
            for key, announced in devices.items():
                self._tracked(key).announced = announced
            self._recorded_bank_id = recorded
        logger.info("Home Assistant: %d devices announced earlier (%s)", len(self._announced()), self._record_file.path)

    def _save_record(self, force: bool = False) -> None:
        self._record_file.save(self._announced(), self._bank_id or self._recorded_bank_id, force)
