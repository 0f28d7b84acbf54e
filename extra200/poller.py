"""Reading the bank: the commands of one poll, and the records they refresh.

One ``pwr`` table per poll gives every unit's voltage, current, temperatures,
SoC, states and cell extremes, so the bank state and every charge decision
refresh on each poll.  The larger replies are read less often:

* ``bat N`` (cells): every unit on the first poll (and ``--once``), then the
  unit whose cells are oldest, once they are older than ``serial.cells_interval``;
* ``pwr N`` (capacity, events): on the first poll, every ``info_interval``, and at
  once when a unit's status columns change to something other than normal;
* ``info N`` / ``stat N`` (barcode, ratings, cycle count, SoH): first poll, then
  one unit per poll once ``serial.info_interval`` has passed.

A firmware that rejects a command family (``info N`` on a US3000D, the ``pwr``
table on an Extra2000) is remembered and not asked again; a rejected ``pwr``
table switches to ``pwr N`` for the configured addresses.  A reply that times
out, is garbled or does not parse is retried once and then dropped: no half
reply ever reaches the records.
"""

import dataclasses
import logging
import time
from typing import Callable, Dict, List, Optional, Set, Tuple, TypeVar

from .config import BatteryConfig, SerialConfig
from .framing import Reply
from .model import Bank, Battery, CellTable, PowerDetail, PowerRow
from .parsing import (
    ParseError,
    is_error_reply,
    parse_cell_table,
    parse_info,
    parse_power_detail,
    parse_power_table,
    parse_stats,
)
from .transport import Console, ConsoleError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Status columns whose change to a non-normal value triggers a fresh ``pwr N`` (events).
_STATUS_FIELDS = ("base_state", "voltage_state", "current_state", "temperature_state",
                  "battery_voltage_state", "battery_temperature_state", "system_alarm_state")
_NORMAL = {None, "Normal", "-", "Charge", "Dischg", "Idle", "Balance"}


class PollFailed(Exception):
    """The poll produced no trustworthy ``pwr`` data."""


def _family(command: str) -> str:
    """``bat 3`` -> ``bat N``: firmware accepts or rejects a command per family."""
    parts = command.split()
    return parts[0] if len(parts) == 1 else "%s N" % parts[0]


class BankReader:
    """Issues one poll's commands on the console and keeps each unit's latest good records."""

    def __init__(self, console: Console, serial: SerialConfig, battery: BatteryConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._console = console
        self._serial = serial
        self._expected: Tuple[int, ...] = tuple(battery.addresses)
        self._clock = clock
        self.batteries: Dict[int, Battery] = {}
        self.rejected: Set[str] = set()  # command families this firmware refuses
        self._failed_logged: Set[str] = set()
        self._missing_logged: Set[int] = set()
        self._seen: Set[int] = set()  # units present in any poll since start
        # When each unit's "bat N" / "pwr N" was last asked, answered or not: a reply that keeps failing
        # to parse is asked again once per cells_interval, not on every poll.
        self._asked: Dict[Tuple[str, int], float] = {}
        self._units_by_detail: Optional[Tuple[int, ...]] = None  # no pwr table, no addresses: found once
        self.polls = 0
        # The daemon's stop request: the poll ends before the next command instead of after all of them.
        self.stopping: Callable[[], bool] = lambda: False

    # -- one command -------------------------------------------------------
    def _ask(self, command: str, parse: Callable[[str], T]) -> Optional[T]:
        """The parsed reply, or None when the firmware rejects the command or two tries failed."""
        family = _family(command)
        if family in self.rejected:
            return None
        for attempt in (1, 2):
            if self.stopping():
                raise PollFailed("stopping: '%s' not sent" % command)
            try:
                reply: Reply = self._console.command(command)
                if not reply.ok:
                    if is_error_reply(reply.text) is not None:
                        return self._rejected(command, reply)
                    # no completion line and no error message: the completion line was garbled
                    raise ParseError("reply without its completion line (garbled?)")
                value = parse(reply.text)
            except (ConsoleError, ParseError) as exc:
                if attempt == 1:
                    logger.debug("%s failed (%s); retrying once", command, exc)
                    continue
                if command not in self._failed_logged:
                    logger.warning("'%s' failed twice, reply dropped: %s", command, exc)
                    self._failed_logged.add(command)
                return None
            if command in self._failed_logged:
                logger.info("'%s' answers again", command)
                self._failed_logged.discard(command)
            return value
        return None

    @property
    def expected(self) -> Tuple[int, ...]:
        return self._expected

    def _rejected(self, command: str, reply: Reply) -> None:
        family = _family(command)
        # An error for one unit's command can mean "no such unit": only the
        # whole-family refusal of a present unit is remembered.
        logger.info("the console rejects '%s' (%s); not asking '%s' again", command, reply.error, family)
        self.rejected.add(family)
        return None

    # -- the poll ------------------------------------------------------------
    def read(self, full: bool = False) -> Bank:
        """One poll.  ``full`` reads every unit's cells, details, info and stats (first poll, ``--once``)."""
        full = full or self.polls == 0
        self.polls += 1
        now = self._clock()
        rows = self._read_rows()
        if rows is None:
            raise PollFailed("no trustworthy pwr data this poll")

        present: List[int] = []
        for row in rows:
            battery = self.batteries.setdefault(row.address, Battery(row.address))
            changed = self._status_changed(battery.row, row)
            battery.row = row
            battery.row_time = now
            if not row.present:
                continue
            present.append(row.address)
            if full or changed or self._detail_due(battery, now):
                self._read_detail(battery, now)
            if battery.row is not None and self._lacks_basics(battery.row) and battery.detail is not None:
                battery.row = _row_from_detail(battery.row, battery.detail)

        # Identity first: its cell count lets the cell table's parser spot a reply cut between rows.
        self._read_identity(present, full, now)
        # Without the pwr table (Extra2000), the cells are the only source of cell extremes: every poll.
        self._read_cells(present, full or "pwr" in self.rejected, now)
        for address in present:
            battery = self.batteries[address]
            if battery.row is not None and battery.row.cell_voltage_low is None and battery.cells_time == now:
                battery.row = _row_with_cell_extremes(battery.row, battery.cells)

        # Without a configured list, every unit seen since start is expected: one that drops out
        # of the table counts as missing (offline), not as never there.
        self._seen.update(present)
        expected = self._expected or tuple(sorted(self._seen))
        missing = tuple(a for a in expected if a not in present)
        self._log_missing(missing)
        batteries = {a: self.batteries[a] for a in present}
        for address in missing:
            batteries.setdefault(address, self.batteries.setdefault(address, Battery(address)))
        return Bank(batteries=batteries, expected=expected, missing=missing,
                    poll_time=time.time(), complete=bool(present) and not missing)

    def _read_rows(self) -> Optional[List[PowerRow]]:
        if "pwr" not in self.rejected:
            rows = self._ask("pwr", parse_power_table)
            if rows is not None:
                return rows
            if "pwr" not in self.rejected:
                return None
        return self._rows_from_details()

    def _rows_from_details(self) -> Optional[List[PowerRow]]:
        """Old firmware without the ``pwr`` table: one ``pwr N`` per configured (or found) unit."""
        addresses = self._expected or self._find_units_by_detail()
        rows: List[PowerRow] = []
        for address in addresses:
            if self.stopping():
                raise PollFailed("stopping: 'pwr %d' not sent" % address)
            try:
                reply = self._console.command("pwr %d" % address)
            except ConsoleError as exc:
                logger.debug("pwr %d failed: %s", address, exc)
                return None
            if not reply.ok:
                if is_error_reply(reply.text) is None:  # a garbled completion line, not "no such unit"
                    logger.debug("pwr %d: reply without its completion line", address)
                    return None
                rows.append(PowerRow(address=address, present=False))
                continue
            try:
                detail = parse_power_detail(reply.text)
            except ParseError as exc:
                logger.debug("pwr %d did not parse: %s", address, exc)
                return None
            battery = self.batteries.setdefault(address, Battery(address))
            battery.detail = detail
            battery.detail_time = self._clock()
            rows.append(_row_from_detail(PowerRow(address=address, present=True), detail))
        return rows

    def _detail_due(self, battery: Battery, now: float) -> bool:
        if battery.detail is None:  # never read: again once per cells_interval until it answers
            return self._due(self._asked.get(("pwr", battery.address)), self._serial.cells_interval, now)
        return self._due(battery.detail_time, self._serial.info_interval, now)

    def _last_asked(self, kind: str, address: int, answered: Optional[float]) -> Optional[float]:
        """The later of the last good read and the last try (None: never tried)."""
        tried = self._asked.get((kind, address))
        return answered if tried is None else max(tried, answered or tried)

    def _find_units_by_detail(self) -> Tuple[int, ...]:
        """Without ``battery.addresses``: the units answering ``pwr N`` from 1 up to the first that does not.

        Found once per run (a unit added later needs a restart, or ``battery.addresses``); a
        console error before any answer is not taken as "no units": unit 1 is polled, and
        the search runs again next poll.
        """
        if self._units_by_detail is not None:
            return self._units_by_detail
        found: List[int] = []
        for address in range(1, 17):
            try:
                reply = self._console.command("pwr %d" % address)
            except ConsoleError as exc:
                logger.debug("looking for units: pwr %d failed: %s", address, exc)
                return tuple(found) or (1,)
            if not reply.ok:
                break
            found.append(address)
        self._units_by_detail = tuple(found) or (1,)
        logger.info("no pwr table and no battery.addresses: polling the units that answer 'pwr N': %s",
                    ", ".join(str(a) for a in self._units_by_detail))
        return self._units_by_detail

    def _read_detail(self, battery: Battery, now: float) -> None:
        self._asked[("pwr", battery.address)] = now
        detail = self._ask("pwr %d" % battery.address, parse_power_detail)
        if detail is not None:
            battery.detail = detail
            battery.detail_time = now

    def _read_cells(self, present: List[int], full: bool, now: float) -> None:
        interval = self._serial.cells_interval
        if full or interval == 0:
            due = list(present)
        else:
            asked = {a: self._last_asked("bat", a, self.batteries[a].cells_time) for a in present}
            stale = [a for a in present if self._due(asked[a], interval, now)]
            # Oldest first, one unit per poll: the bank refreshes fast, cells follow round-robin.
            stale.sort(key=lambda a: asked[a] or 0.0)
            due = stale[:1]
        for address in due:
            self._asked[("bat", address)] = now
            info = self.batteries[address].info
            cells = info.cell_count if info is not None else None
            table = self._ask("bat %d" % address, lambda text, a=address, n=cells: parse_cell_table(text, a, n))
            if table is not None:
                battery = self.batteries[address]
                battery.cells = table
                battery.cells_time = now

    def _read_identity(self, present: List[int], full: bool, now: float) -> None:
        interval = self._serial.info_interval
        due = [a for a in present if full or self._due(self.batteries[a].info_time, interval, now)]
        if not full:
            due.sort(key=lambda a: self.batteries[a].info_time or 0.0)
            due = due[:1]
        for address in due:
            battery = self.batteries[address]
            info = self._ask("info %d" % address, lambda text, a=address: _own(parse_info(text), a, "info"))
            if info is None and address == 1 and "info N" in self.rejected:
                info = self._ask("info", parse_info)  # US3000D: only the unit on the cable answers
            if info is not None:
                battery.info = info
            stats = self._ask("stat %d" % address, lambda text, a=address: _own(parse_stats(text), a, "stat"))
            if stats is None and address == 1 and "stat N" in self.rejected:
                stats = self._ask("stat", parse_stats)  # Pytes V5, US3000D
            if stats is not None:
                battery.stats = stats
            # Stamp even when rejected, so a refusing firmware is not asked every poll.
            battery.info_time = now
            battery.stats_time = now

    @staticmethod
    def _due(last: Optional[float], interval: float, now: float) -> bool:
        return last is None or now - last >= interval

    @staticmethod
    def _status_changed(old: Optional[PowerRow], new: PowerRow) -> bool:
        if old is None or not new.present:
            return False
        for name in _STATUS_FIELDS:
            value = getattr(new, name)
            if value != getattr(old, name) and value not in _NORMAL:
                return True
        return False

    @staticmethod
    def _lacks_basics(row: PowerRow) -> bool:
        return row.voltage is None or row.current is None or row.soc is None

    def _log_missing(self, missing: Tuple[int, ...]) -> None:
        kind = "configured" if self._expected else "previously seen"
        for address in missing:
            if address not in self._missing_logged:
                logger.error("%s battery %d is absent from the console's pwr table", kind, address)
                self._missing_logged.add(address)
        for address in list(self._missing_logged):
            if address not in missing:
                logger.info("%s battery %d is present again", kind, address)
                self._missing_logged.discard(address)


def _own(record: T, address: int, command: str) -> T:
    """The record, unless it names another unit than the one asked for (a garbled or stray reply)."""
    printed = getattr(record, "address", None)
    if printed is not None and printed != address:
        raise ParseError("'%s %d' answered for unit %d" % (command, address, printed))
    return record


def _row_with_cell_extremes(row: PowerRow, table: Optional[CellTable]) -> PowerRow:
    """Cell voltage and temperature extremes for a row built from ``pwr N``, from this poll's cell table."""
    if table is None:
        return row
    volts = [(c.voltage, c.index) for c in table.cells if c.voltage is not None]
    temps = [(c.temperature, c.index) for c in table.cells if c.temperature is not None]
    if len(volts) != len(table.cells):
        return row  # an incomplete table proves nothing about the extremes
    fill = {
        "cell_voltage_low": min(volts)[0], "cell_voltage_low_id": min(volts)[1],
        "cell_voltage_high": max(volts)[0], "cell_voltage_high_id": max(volts)[1],
    }
    if temps and len(temps) == len(table.cells):
        fill.update({"cell_temp_low": min(temps)[0], "cell_temp_low_id": min(temps)[1],
                     "cell_temp_high": max(temps)[0], "cell_temp_high_id": max(temps)[1]})
    return dataclasses.replace(row, **fill)


def _row_from_detail(row: PowerRow, detail: PowerDetail) -> PowerRow:
    """Fill a row's unknown basics from the unit's ``pwr N`` detail."""
    fill = {}
    for name in ("voltage", "current", "temperature", "soc", "base_state", "voltage_state",
                 "current_state", "temperature_state"):
        if getattr(row, name) is None and getattr(detail, name) is not None:
            fill[name] = getattr(detail, name)
    return dataclasses.replace(row, **fill) if fill else row
