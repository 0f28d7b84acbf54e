"""The record of what was announced to Home Assistant: ``<state_dir>/homeassistant.json``.

One ``Announced`` entry per device (its config topic, address, barcode, the
components sent and those reduced to ``{"p": <platform>}``, when it was last
seen) and the bank id it was announced under, so that after a restart the
daemon can still remove a battery that vanished while it was down, or the
components of a lowered cell level, and keeps every unique id across upgrades.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..files import read_json, write_json_atomic
from ..reporting import Episodes
from .entities import PLATFORMS

# The publisher's log lines, under the name they have always had.
logger = logging.getLogger(__package__)

RECORD_FILE = "homeassistant.json"
RECORD_REFRESH = 600.0  # seconds between record writes that only refresh "last seen"


@dataclass
class Announced:
    """What was announced for one device (persisted)."""

    topic: str
    address: Optional[int]
    barcode: Optional[str]
    components: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)  # sent as {"p": <platform>} until the device goes
    last_seen: float = 0.0
    platforms: Dict[str, str] = field(default_factory=dict)  # component -> platform, where not "sensor"

    def to_json(self) -> Dict[str, Any]:
        return {
            "topic": self.topic,
            "address": self.address,
            "barcode": self.barcode,
            "components": self.components,
            "removed": self.removed,
            "last_seen": self.last_seen,
            "platforms": self.platforms,
        }

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Optional["Announced"]:
        topic = data.get("topic")
        address = data.get("address")
        if not isinstance(topic, str) or not (address is None or isinstance(address, int)):
            return None
        barcode = data.get("barcode") if isinstance(data.get("barcode"), str) else None
        components = [c for c in data.get("components") or [] if isinstance(c, str)]
        removed = [c for c in data.get("removed") or [] if isinstance(c, str)]
        seen = data.get("last_seen")
        platforms = data.get("platforms") if isinstance(data.get("platforms"), dict) else {}
        return cls(
            topic,
            address,
            barcode,
            components,
            removed,
            float(seen) if isinstance(seen, (int, float)) else 0.0,
            {str(k): str(v) for k, v in platforms.items() if v in PLATFORMS},
        )


def recorded_bank_id(state_dir: Optional[str]) -> Optional[str]:
    """The bank id the daemon announced under, as recorded in its state directory (None when unknown)."""
    data = read_json(os.path.join(state_dir, RECORD_FILE)) if state_dir else None
    bank_id = data.get("bank_id") if isinstance(data, dict) else None
    return bank_id if isinstance(bank_id, str) and bank_id else None


class RecordFile:
    """Reads and writes the record: at once when it changed (``dirty``), else every ``RECORD_REFRESH`` seconds.

    A record that cannot be written is reported once and tried again later; it
    costs only the removal of batteries that vanish across a restart.
    """

    def __init__(self, state_dir: Optional[str], clock: Callable[[], float]) -> None:
        self.path = os.path.join(state_dir, RECORD_FILE) if state_dir else None
        self.dirty = False  # something to write at the next save
        self._clock = clock
        self._saved_at: Optional[float] = None
        self._failing = Episodes(logger)  # "save", until a save works

    def load(self) -> Optional[Tuple[Dict[str, Announced], str]]:
        """The devices announced earlier and the bank id they were announced under ("" when unknown);
        None without a state directory or a readable record."""
        if self.path is None:
            return None
        data = read_json(self.path)
        if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
            return None
        devices: Dict[str, Announced] = {}
        for key, value in data["devices"].items():
            announced = Announced.from_json(value) if isinstance(value, dict) else None
            if announced is not None:
                devices[str(key)] = announced
        bank_id = data.get("bank_id")
        if not isinstance(bank_id, str) or not bank_id:
            # written before the id was recorded: the bank device's key is <bank id>_bank
            banks = [k for k, a in devices.items() if a.address is None and k.endswith("_bank")]
            bank_id = banks[0][: -len("_bank")] if len(banks) == 1 else ""
        return devices, bank_id

    def save(self, devices: Dict[str, Announced], bank_id: str, force: bool = False) -> None:
        if self.path is None:
            return
        now = self._clock()
        refresh = self._saved_at is None or now - self._saved_at >= RECORD_REFRESH
        if not (force or self.dirty or refresh):
            return
        data: Dict[str, Any] = {"version": 1, "devices": {k: a.to_json() for k, a in sorted(devices.items())}}
        if bank_id:
            data["bank_id"] = bank_id
        try:
            write_json_atomic(self.path, data)
        except OSError as exc:
            self._failing.fault(
                "save",
                logging.WARNING,
                "Home Assistant: cannot write %s (%s); a restart may not clear removed batteries",
                self.path,
                exc,
            )
            self._saved_at = now  # retry after RECORD_REFRESH, or at the next change
            return
        self._failing.forget("save")
        self.dirty = False
        self._saved_at = now
