"""Loop statistics, and the per-cell data each ``cells.level`` selects.

``LoopStats`` counts polls and failures, keeps the last serial round-trip
time and the uptime: the polling loop publishes ``as_dict`` retained on
``<topic_base>/diagnostics``, the JSON status file carries it, and the log
shows ``summary`` at a low rate (``should_log``).

The cell helpers define once what each level means, so the JSON status file,
the database cell rows and the Home Assistant cell entities carry the same
columns:

* ``off``: no cell data;
* ``low``: cell voltages;
* ``medium``: voltages, temperatures and the state columns, plus per-unit
  min / max / delta statistics (``cell_statistics``);
* ``high``: every column of ``bat N`` (current, SoC, coulomb, balancing and
  any column this firmware adds, as printed).

Every ``now`` given to one ``LoopStats`` must come from the same clock
(``time.monotonic()`` is the natural one).
"""

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

from .derive import CellExtremes
from .model import CellRow

logger = logging.getLogger(__name__)

CELL_LEVELS: Tuple[str, ...] = ("off", "low", "medium", "high")

# CellRow attributes per level, each level adding to the one before.
_LEVEL_FIELDS: Dict[str, Tuple[str, ...]] = {
    "off": (),
    "low": ("voltage",),
    "medium": ("voltage", "temperature", "base_state", "voltage_state", "current_state", "temperature_state"),
    "high": (
        "voltage",
        "temperature",
        "base_state",
        "voltage_state",
        "current_state",
        "temperature_state",
        "current",
        "soc",
        "coulomb",
        "balancing",
    ),
}


def cell_fields(level: str) -> Tuple[str, ...]:
    """The ``CellRow`` attributes a level carries (``high`` also carries ``extra``)."""
    try:
        return _LEVEL_FIELDS[level]
    except KeyError:
        raise ValueError("unknown cells level %r (one of %s)" % (level, ", ".join(CELL_LEVELS))) from None


def cell_values(cell: CellRow, level: str) -> Dict[str, Any]:
    """One cell as a plain dict for ``level``: ``cell`` (1-based number) then the level's fields.

    ``high`` adds ``extra``, the columns this firmware prints that the model
    does not name, as printed (only when there are any).
    """
    values: Dict[str, Any] = {"cell": cell.index + 1}
    for name in cell_fields(level):
        values[name] = getattr(cell, name)
    if level == "high" and cell.extra:
        values["extra"] = dict(cell.extra)
    return values


def statistics_wanted(level: str) -> bool:
    """Whether ``level`` carries the per-unit min / max / delta statistics."""
    return level in ("medium", "high")


def cell_statistics(table: CellExtremes) -> Dict[str, Any]:
    """Min / max / delta of the cell voltages and temperatures of one ``bat N``, with where they are
    (``derive.table_extremes``, computed with the poll's snapshot).

    Keys: ``voltage_min``, ``voltage_max``, ``voltage_delta`` (V),
    ``voltage_min_cell``, ``voltage_max_cell`` (ids like ``B2C7``), and the
    same for ``temperature``.  None where no cell reports the column.
    """
    result: Dict[str, Any] = {}
    for attr, low, high, delta in (
        ("voltage", table.voltage_min, table.voltage_max, table.voltage_delta),
        ("temperature", table.temp_min, table.temp_max, table.temp_delta),
    ):
        result[attr + "_min"] = low.value if low is not None else None
        result[attr + "_max"] = high.value if high is not None else None
        result[attr + "_delta"] = delta
        result[attr + "_min_cell"] = low.id if low is not None else None
        result[attr + "_max_cell"] = high.id if high is not None else None
    return result


class LoopStats:
    """Counters of the polling loop since the daemon started."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.polls = 0
        self.failed = 0
        self.consecutive_failures = 0
        self.last_round_trip: Optional[float] = None  # seconds, of the last poll that measured one
        self.last_poll: Optional[float] = None
        self.last_ok: Optional[bool] = None
        self._last_logged: Optional[float] = None

    def record_poll(self, ok: bool, round_trip: Optional[float], now: float) -> None:
        """Count one poll; ``round_trip`` is the serial exchange time in seconds (None: not measured)."""
        self.polls += 1
        if ok:
            self.consecutive_failures = 0
        else:
            self.failed += 1
            self.consecutive_failures += 1
        if round_trip is not None:
            self.last_round_trip = round_trip
        self.last_poll = now
        self.last_ok = ok

    @property
    def succeeded(self) -> int:
        return self.polls - self.failed

    @property
    def success_ratio(self) -> Optional[float]:
        """Good polls over all polls, 0 to 1; None before the first poll."""
        if self.polls == 0:
            return None
        return self.succeeded / self.polls

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.started)

    def as_dict(self, now: float, event_counts: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
        """The statistics as JSON-ready values; ``event_counts`` (``EventMonitor.counts()``) is added when given."""
        ratio = self.success_ratio
        document: Dict[str, Any] = {
            "polls": self.polls,
            "failed": self.failed,
            "succeeded": self.succeeded,
            "consecutive_failures": self.consecutive_failures,
            "success_ratio": round(ratio, 4) if ratio is not None else None,
            "success_percent": round(ratio * 100.0, 2) if ratio is not None else None,
            "last_round_trip": round(self.last_round_trip, 3) if self.last_round_trip is not None else None,
            "last_poll_ok": self.last_ok,
            "uptime": round(self.uptime(now), 1),
        }
        if event_counts is not None:
            document["event_counts"] = dict(sorted(event_counts.items()))
        return document

    def summary(self, now: float) -> str:
        """One log line: ``polls 1200, failed 3 (99.75 % good), round trip 0.412 s, uptime 1 d 2 h 5 min``."""
        ratio = self.success_ratio
        good = "%.2f %% good" % (ratio * 100.0) if ratio is not None else "none yet"
        trip = "%.3f s" % self.last_round_trip if self.last_round_trip is not None else "not measured"
        return "polls %d, failed %d (%s), round trip %s, uptime %s" % (
            self.polls,
            self.failed,
            good,
            trip,
            format_duration(self.uptime(now)),
        )

    def should_log(self, now: float, interval: float) -> bool:
        """True at most once per ``interval`` seconds (the first call included): the caller then logs ``summary``."""
        if self._last_logged is not None and now - self._last_logged < interval:
            return False
        self._last_logged = now
        return True


def format_duration(seconds: float) -> str:
    """``3 d 4 h 5 min`` / ``4 h 5 min`` / ``5 min 7 s`` / ``7 s``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%d d %d h %d min" % (days, hours, minutes)
    if hours:
        return "%d h %d min" % (hours, minutes)
    if minutes:
        return "%d min %d s" % (minutes, secs)
    return "%d s" % secs
