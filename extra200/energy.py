"""Energy counters: kWh charged into and discharged out of each battery and the bank.

The console reports power (V x I) but no energy totals, so the daemon
integrates power over time itself (trapezoid rule, split exactly at a sign
change) into two counters per battery and for the bank: energy charged and
energy discharged.  They only ever grow, which is what Home Assistant's Energy
dashboard wants from a home battery (``total_increasing`` kWh sensors).

The counters live in ``<state_dir>/energy.json`` (persistent storage, never the
log ramdisk), written atomically: a temporary file in the same directory,
fsync, rename, fsync of the directory.  The file holds, per counter, the
totals *and* the power sample they were integrated up to, taken at the same
instant.  After a restart or a crash (kill -9, power cut) integration resumes
from that saved sample, so:

* nothing is counted twice: totals and sample in the file always agree, and
  whatever was integrated in memory after the last save was lost with the
  process;
* the interval since the saved sample is integrated once, from the saved
  sample to the first new one, if it is shorter than ``max_gap`` (5 minutes
  by default); a longer gap (daemon stopped, console silent, clock jump) is
  never integrated across, as nobody knows what flowed meanwhile.

A battery is keyed by its barcode where the console gives one, so a unit moved
to another address keeps its counters; otherwise by its address.  The last
barcode seen at each address is remembered, so after a restart a unit whose
``info`` has not been read yet is still counted under its barcode.

Times are wall-clock seconds (``time.time()``), as they must survive restarts.
"""

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .derive import BankSummary
from .files import read_json, write_json_atomic
from .model import Bank
from .reporting import Episodes

logger = logging.getLogger(__name__)

ENERGY_FILE = "energy.json"
DEFAULT_MAX_GAP = 300.0  # seconds; a longer gap between two samples is not integrated
BANK_KEY = "bank"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class EnergyTotals:
    """Energy into (charged) and out of (discharged) a battery or the bank since counting began, in kWh."""

    charged_kwh: float
    discharged_kwh: float


@dataclass(frozen=True)
class EnergySnapshot:
    """The counters after the latest update: the bank, and each unit by its current address."""

    bank: Optional[EnergyTotals]
    units: Dict[int, EnergyTotals]

    def unit(self, address: int) -> Optional[EnergyTotals]:
        return self.units.get(address)


EMPTY_SNAPSHOT = EnergySnapshot(bank=None, units={})


def split_trapezoid(p0: float, p1: float, seconds: float) -> Tuple[float, float]:
    """(charged Wh, discharged Wh) between two power samples (W, + charging) ``seconds`` apart.

    Power is taken as linear between the samples; when it changes sign, the
    interval is split where the line crosses zero, so charging and discharging
    parts never cancel each other out.
    """
    hours = seconds / 3600.0
    if p0 >= 0 and p1 >= 0:
        return (p0 + p1) / 2.0 * hours, 0.0
    if p0 <= 0 and p1 <= 0:
        return 0.0, -(p0 + p1) / 2.0 * hours
    crossing = p0 / (p0 - p1)  # fraction of the interval before power reaches zero
    first = p0 * crossing * hours / 2.0
    second = p1 * (1.0 - crossing) * hours / 2.0
    charged = max(first, 0.0) + max(second, 0.0)
    discharged = -(min(first, 0.0) + min(second, 0.0))
    return charged, discharged


class _Counter:
    """One integrating counter: totals in Wh and the sample they reach up to."""

    __slots__ = ("charged_wh", "discharged_wh", "last_time", "last_power")

    def __init__(
        self,
        charged_wh: float = 0.0,
        discharged_wh: float = 0.0,
        last_time: Optional[float] = None,
        last_power: Optional[float] = None,
    ) -> None:
        self.charged_wh = charged_wh
        self.discharged_wh = discharged_wh
        self.last_time = last_time
        self.last_power = last_power

    def add(self, power: Optional[float], now: float, max_gap: float) -> None:
        if power is None:  # unknown power: never guess across it
            self.last_time = None
            self.last_power = None
            return
        if self.last_time is not None and self.last_power is not None:
            elapsed = now - self.last_time
            if elapsed == 0:
                self.last_power = power  # the same instant again: nothing to integrate
                return
            if 0 < elapsed <= max_gap:
                charged, discharged = split_trapezoid(self.last_power, power, elapsed)
                self.charged_wh += charged
                self.discharged_wh += discharged
        self.last_time = now
        self.last_power = power

    def forget_sample(self) -> None:
        self.last_time = None
        self.last_power = None

    def totals(self) -> EnergyTotals:
        return EnergyTotals(round(self.charged_wh / 1000.0, 6), round(self.discharged_wh / 1000.0, 6))

    def to_json(self) -> Dict[str, Any]:
        return {
            "charged_wh": self.charged_wh,
            "discharged_wh": self.discharged_wh,
            "time": self.last_time,
            "power": self.last_power,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "_Counter":
        def number(name: str) -> Optional[float]:
            value = data.get(name)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        return cls(
            max(number("charged_wh") or 0.0, 0.0), max(number("discharged_wh") or 0.0, 0.0), number("time"), number("power")
        )


def unit_key(address: int, barcode: Optional[str]) -> str:
    return "sn:%s" % barcode if barcode else "addr:%d" % address


class EnergyCounters:
    """Charged / discharged energy per battery and for the bank, persisted in ``path``.

    Call ``load()`` once at start, ``update()`` after every poll, ``save()``
    (or ``save_if_due()``) every minute or so and on shutdown.  Thread-safe.
    """

    def __init__(self, path: str, max_gap: float = DEFAULT_MAX_GAP) -> None:
        self.path = path
        self.max_gap = max_gap
        self._counters: Dict[str, _Counter] = {}
        self._barcodes: Dict[int, str] = {}  # address -> last barcode seen there
        self._keys: Dict[int, str] = {}  # address -> counter key of the latest update
        self._lock = threading.Lock()
        self._dirty = False
        self._failing = Episodes(logger)  # "save", until a save works
        self._last_save: Optional[float] = None

    # -- persistence ---------------------------------------------------------
    def load(self) -> None:
        """Restore the counters from the file (a missing file starts at zero)."""
        data = read_json(self.path)
        with self._lock:
            self._counters = {}
            self._barcodes = {}
            if data is None:
                logger.info("energy counters: %s does not exist yet; counting from zero", self.path)
                return
            if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
                logger.error("energy counters: %s has an unknown format; counting from zero", self.path)
                return
            counters = data.get("counters")
            if isinstance(counters, dict):
                for key, value in counters.items():
                    if isinstance(value, dict):
                        self._counters[str(key)] = _Counter.from_json(value)
            barcodes = data.get("barcodes")
            if isinstance(barcodes, dict):
                for address, barcode in barcodes.items():
                    if str(address).isdigit() and isinstance(barcode, str) and barcode:
                        self._barcodes[int(address)] = barcode
            logger.info("energy counters: restored %d counters from %s", len(self._counters), self.path)

    def save(self) -> bool:
        """Write the counters atomically; False (logged once, retried on the next call) when that fails."""
        with self._lock:
            if not self._dirty and os.path.exists(self.path):
                return True
            data = {
                "version": _FORMAT_VERSION,
                "counters": {key: counter.to_json() for key, counter in sorted(self._counters.items())},
                "barcodes": {str(address): barcode for address, barcode in sorted(self._barcodes.items())},
            }
            try:
                write_json_atomic(self.path, data)
            except OSError as exc:
                self._failing.fault(
                    "save",
                    logging.WARNING,
                    "energy counters: cannot write %s (%s); keeping them in memory and retrying",
                    self.path,
                    exc,
                )
                return False
            self._failing.recovered("save", "energy counters: %s written again", self.path)
            self._dirty = False
            return True

    def save_if_due(self, now: float, interval: float = 60.0) -> bool:
        """``save()`` when ``interval`` seconds have passed since the last attempt; True when nothing is pending."""
        if self._last_save is not None and 0 <= now - self._last_save < interval:
            return not self._dirty
        self._last_save = now
        return self.save()

    # -- counting --------------------------------------------------------------
    def _key_for(self, address: int, barcode: Optional[str]) -> str:
        if barcode:
            self._barcodes[address] = barcode
        else:
            barcode = self._barcodes.get(address)  # assume the same unit until its info says otherwise
        key = unit_key(address, barcode)
        previous = self._keys.get(address)
        if previous is not None and previous.startswith("addr:") and key != previous and key not in self._counters:
            # The unit at this address just got its barcode: its counter follows it.
            self._counters[key] = self._counters.pop(previous)
        return key

    def update(self, summary: BankSummary, now: float, bank: Optional[Bank] = None) -> None:
        """Integrate each present unit's and the bank's power up to ``now`` (wall-clock seconds).

        ``bank`` gives the units' barcodes; without it, units are keyed by address.
        """
        barcodes: Dict[int, Optional[str]] = {}
        if bank is not None:
            barcodes = {b.address: b.barcode for b in bank.present()}
        with self._lock:
            seen = set()
            keys: Dict[int, str] = {}
            for unit in summary.units:
                key = self._key_for(unit.address, barcodes.get(unit.address))
                if key in seen:  # two units claim one barcode (a garbled read): count neither twice
                    key = unit_key(unit.address, None)
                seen.add(key)
                keys[unit.address] = key
                self._counters.setdefault(key, _Counter()).add(unit.power, now, self.max_gap)
            self._counters.setdefault(BANK_KEY, _Counter()).add(summary.power, now, self.max_gap)
            seen.add(BANK_KEY)
            for key, counter in self._counters.items():
                if key not in seen:  # absent this poll: its power is unknown
                    counter.forget_sample()
            self._keys = keys
            self._dirty = True

    def snapshot(self) -> EnergySnapshot:
        with self._lock:
            bank = self._counters.get(BANK_KEY)
            units = {address: self._counters[key].totals() for address, key in self._keys.items() if key in self._counters}
            return EnergySnapshot(bank=bank.totals() if bank is not None else None, units=units)

    def totals(self, key: str) -> Optional[EnergyTotals]:
        """The totals of one counter by key (``bank``, ``sn:<barcode>``, ``addr:<N>``), for tools and tests."""
        with self._lock:
            counter = self._counters.get(key)
            return counter.totals() if counter is not None else None
