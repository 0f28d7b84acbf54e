"""The JSON status file: the whole bank, every unit, cells by level and loop statistics, for other automation.

``build_status`` makes the document (pure: it reads records, nothing else);
``write_status`` replaces the file atomically: the JSON goes to a temporary
file in the same directory, is flushed to disk, and is then renamed over the
old file, so a reader sees either the old or the new document, never a
partial one.  ``StatusFile`` wraps that for the polling loop and logs a
failing write once instead of every poll.

The document's keys are SI values as in ``model`` (V, A, °C, %, Ah, W),
``null`` where unknown; ``schema`` is raised when a key changes meaning.
"""

import dataclasses
import datetime
import json
import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional

from . import __version__
from .derive import BankSummary, CellExtremes, Extreme, UnitSummary
from .files import write_text_atomic
from .model import Bank, Battery
from .reporting import Episodes
from .stats import cell_statistics, cell_values, statistics_wanted

logger = logging.getLogger(__name__)

SCHEMA = 1


def _plain(value: Any) -> Any:
    """Records, tuples and mappings to JSON-ready values; NaN and infinity to None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Extreme):
        return {"value": _plain(value.value), "id": value.id}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


# BankSummary / UnitSummary figures, in the order they appear in the file.
_FIGURES = (
    "voltage",
    "current",
    "power",
    "soc",
    "temperature",
    "capacity",
    "remaining",
    "mos_temperature",
    "cell_voltage_min",
    "cell_voltage_max",
    "cell_temp_min",
    "cell_temp_max",
    "balancing",
    "cycle_count",
    "soh",
)


def _figures(summary: Any) -> Dict[str, Any]:
    document = {name: _plain(getattr(summary, name)) for name in _FIGURES}
    document["cell_voltage_delta"] = summary.cell_voltage_delta
    return document


def _battery(
    battery: Battery, unit: Optional[UnitSummary], table: CellExtremes, cells_level: str, events: Optional[List[Any]]
) -> Dict[str, Any]:
    document: Dict[str, Any] = {"address": battery.address, "present": battery.present}
    document.update(_figures(unit) if unit is not None else {})
    document["barcode"] = battery.barcode
    document["pwr"] = _plain(battery.row)
    document["detail"] = _plain(battery.detail)
    document["info"] = _plain(battery.info)
    stats = battery.stats
    document["stat"] = (
        {"cycle_count": stats.cycle_count, "soh": stats.soh, "charge_times": stats.charge_times} if stats is not None else None
    )
    if events is not None:
        document["events"] = [_event(e) for e in events]
    if cells_level != "off":
        cells = battery.cells.cells if battery.cells is not None else ()
        document["cells"] = [cell_values(c, cells_level) for c in cells]
        if statistics_wanted(cells_level):
            document["cell_statistics"] = cell_statistics(table)
    return document


def _event(event: Any) -> Dict[str, Any]:
    return {"kind": event.kind, "code": event.code, "name": event.name, "level": event.level, "cell": event.cell}


def _stats_dict(stats: Any) -> Optional[Dict[str, Any]]:
    if stats is None:
        return None
    if hasattr(stats, "as_dict"):
        # A LoopStats: uptime as of its last poll, so the document does not depend on when it is built.
        now = stats.last_poll if stats.last_poll is not None else stats.started
        return dict(stats.as_dict(now))
    return _plain(stats)


def build_status(
    bank: Bank,
    summary: BankSummary,
    limits: Optional[Any],
    stats: Optional[Any],
    cells_level: str,
    events: Optional[Any],
) -> Dict[str, Any]:
    """The status document of one poll.

    ``limits``: the charge limits (any record, dataclass or mapping; None when
    charge control is off).  ``stats``: ``LoopStats.as_dict(now)`` (or the
    ``LoopStats`` itself).  ``events``: the ``EventMonitor`` (its active
    events per unit and its counts), or None.  ``cells_level``: off / low /
    medium / high, as in ``stats.cell_fields``.
    """
    units = {u.address: u for u in summary.units}
    active: Dict[int, List[Any]] = events.active() if events is not None else {}
    poll_time = bank.poll_time
    document: Dict[str, Any] = {
        "schema": SCHEMA,
        "program": "extra200tomqtt",
        "version": __version__,
        "time": poll_time,
        "time_utc": _iso(poll_time),
        "complete": bank.complete,
        "expected": list(bank.expected),
        "missing": list(bank.missing),
        "cells_level": cells_level,
        "bank": dict(_figures(summary), units_online=summary.units_online),
        "batteries": [
            _battery(b, units.get(a), summary.cell_table(a), cells_level, active.get(a, []) if events is not None else None)
            for a, b in sorted(bank.batteries.items())
        ],
        "limits": _plain(limits) if limits is not None else None,
        "loop": _stats_dict(stats),
    }
    if events is not None:
        document["events"] = {"counts": events.counts(), "kinds": events.kind_counts()}
    return document


def _iso(timestamp: Optional[float]) -> Optional[str]:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def write_status(path: str, document: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``document`` as JSON, atomically; raise ``OSError`` (or ``ValueError``) on failure."""
    write_text_atomic(path, json.dumps(_plain(document), allow_nan=False, separators=(",", ":")) + "\n")


class StatusFile:
    """The polling loop's status file: ``write`` never raises; a failure is logged once until it works again."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._failing = Episodes(logger)  # "write", until a write works
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Temporary files a crash left behind (``.status.json.XXXX.tmp``)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        prefix = "." + os.path.basename(self.path) + "."
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass

    def write(self, document: Mapping[str, Any]) -> bool:
        try:
            write_status(self.path, document)
        except (OSError, ValueError) as exc:
            self._failing.fault(
                "write", logging.ERROR, "cannot write the status file %s: %s (retrying every poll)", self.path, exc
            )
            return False
        self._failing.recovered("write", "status file %s written again", self.path)
        return True
