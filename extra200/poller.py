"""Reading the bank: the commands of one poll, and the records they refresh.

A poll has two phases, so what is published is as young as the console allows:

1. ``read_state``: the whole-bank ``pwr`` table (or, on firmware without it, one
   ``pwr N`` per unit), cross-checked (``crosscheck``), gives every unit's
   voltage, current, temperatures, SoC, states and cell extremes.  The bank is
   published from this at once.
2. ``read_more``: the larger, slower replies, bounded by a deadline and ended
   at the first sign of a silent console (the next poll's ``pwr`` decides
   whether the data is still fresh):

   * ``bat N`` (cells): every unit whose cells are not known yet, then the unit
     whose cells are oldest, once they are older than ``serial.cells_interval``
     (every unit every poll on firmware without the ``pwr`` table, where the
     cells are the only source of cell extremes);
   * ``pwr N`` (capacity, events): first poll, every ``info_interval``, at once
     when a unit's status columns change to something other than normal, and
     every poll while it shows a protection event or fault (so its clearing is seen);
   * ``info N`` / ``stat N`` (barcode, ratings, cycle count, SoH): first poll, then
     one unit per poll once ``serial.info_interval`` has passed.

Every reply that feeds a published value is read twice and believed only
where both reads agree (``crosscheck``).  A firmware that rejects a command
family (``info N`` on a US3000D, the ``pwr`` table on an Extra2000) is
remembered and not asked again; a rejected ``pwr`` table switches to ``pwr N``
for the configured addresses.  A reply that times out, is garbled or does not
parse is retried and then dropped: no half reply ever reaches the records.
"""

import dataclasses
import logging
import time
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from .charge import detail_signals_protection
from .config import BatteryConfig, SerialConfig
from .crosscheck import (
    JumpGuard,
    agreed,
    agreed_rows,
    confirmed_early,
    record_key,
    table_contradiction,
    unknown_row,
    with_rows_not_reached,
    without_cell_extremes,
)
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
from .reporting import Episodes
from .transport import Console, ConsoleError, ConsoleInterrupted, ConsoleTimeout, PortLost

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Status columns whose change to a non-normal value triggers a fresh ``pwr N`` (events).
_STATUS_FIELDS = (
    "base_state",
    "voltage_state",
    "current_state",
    "temperature_state",
    "battery_voltage_state",
    "battery_temperature_state",
    "system_alarm_state",
)
_NORMAL = {None, "Normal", "-", "Charge", "Dischg", "Idle", "Balance"}

_MAX_EXCHANGES = 4  # per command: two agreeing reads, a tie-breaker, one failure tolerated
_MAX_FAILURES = 2


class PollFailed(Exception):
    """The poll produced no trustworthy ``pwr`` data."""


class _Rejected(Exception):
    """The firmware answered the command with an error message."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error or "error reply")
        self.reply = reply


Vote = Callable[[Sequence[T]], Tuple[Optional[T], bool]]


def _vote_whole(reads: Sequence[T]) -> Tuple[Optional[T], bool]:
    """Two reads of a record must agree exactly (but for running clocks)."""
    value = agreed(reads, record_key)
    return value, value is not None


def _vote_rows(reads: Sequence[List[PowerRow]]) -> Tuple[Optional[List[PowerRow]], bool]:
    """``pwr`` rows are voted one unit at a time; a unit left unconfirmed is unknown this poll."""
    if len(reads) < 2:
        return None, False
    confirmed, unconfirmed = agreed_rows(reads)
    rows = [confirmed.get(row.address) or unknown_row(row.address) for row in reads[-1]]
    return rows, not unconfirmed


class _TableStream:
    """The confirming read of the ``pwr`` table, checked as its rows arrive (``crosscheck.confirmed_early``)."""

    def __init__(self, earlier: Sequence[List[PowerRow]], needed: Set[int]) -> None:
        self._earlier = earlier
        self._needed = needed
        self._agreed: List[PowerRow] = []  # the rows ``enough`` found confirming: the partial reply's rows

    def enough(self, lines: Sequence[str]) -> bool:
        if not self._reached_last_needed(lines[-1]):
            return False  # parse only once the rows that matter are in (not once per arriving row)
        try:
            rows = parse_power_table("\n".join(lines), complete=False)
        except ParseError:
            return False  # not yet (or a damaged line: then the whole table is read, and voted as usual)
        if not confirmed_early(self._earlier, rows, self._needed):
            return False
        self._agreed = rows
        return True

    def _reached_last_needed(self, line: str) -> bool:
        first = line.split(None, 1)[0] if line.strip() else ""
        return first.isdigit() and bool(self._needed) and int(first) >= max(self._needed)

    def parse(self, text: str) -> List[PowerRow]:
        """The rows that arrived, followed by the last whole read's rows of the (absent) units not reached."""
        rows = self._agreed or parse_power_table(text, complete=False)  # parsed already, as they arrived
        return with_rows_not_reached(rows, self._earlier[-1])


def _family(command: str) -> str:
    """``bat 3`` -> ``bat N``: firmware accepts or rejects a command per family."""
    parts = command.split()
    return parts[0] if len(parts) == 1 else "%s N" % parts[0]


def _silent(exc: ConsoleError) -> bool:
    """The console stopped answering (or we are stopping): no point in sending more this poll."""
    return isinstance(exc, (ConsoleInterrupted, PortLost)) or (isinstance(exc, ConsoleTimeout) and not exc.raw)


class BankReader:
    """Issues one poll's commands on the console and keeps each unit's latest good records."""

    def __init__(
        self, console: Console, serial: SerialConfig, battery: BatteryConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._console = console
        self._serial = serial
        self._expected: Tuple[int, ...] = tuple(battery.addresses)
        self._clock = clock
        self.batteries: Dict[int, Battery] = {}
        self.rejected: Set[str] = set()  # command families this firmware refuses
        self._answered: Set[str] = set()  # command families that have answered at least once
        self._failures = Episodes(logger)  # commands that gave no confirmed reply, until one answers
        self._doubts = Episodes(logger)  # commands whose reads disagreed (or whose unit left), until they agree
        self._absent = Episodes(logger)  # battery addresses missing from the pwr table
        self._seen: Set[int] = set()  # units present in any poll since start
        self._present: List[int] = []
        self._jumps = JumpGuard()
        self._state_time: Optional[float] = None
        # When each unit's "bat N" / "pwr N" was last asked, answered or not: a reply that keeps failing
        # to parse is asked again once per cells_interval, not on every poll.
        self._asked: Dict[Tuple[str, int], float] = {}
        self._units_by_detail: Optional[Tuple[int, ...]] = None  # no pwr table, no addresses: found once
        self.polls = 0
        # The daemon's stop request: the poll ends before the next command instead of after all of them.
        self.stopping: Callable[[], bool] = lambda: False

    @property
    def expected(self) -> Tuple[int, ...]:
        return self._expected

    # -- one command -------------------------------------------------------
    def _exchange(self, command: str, parse: Callable[[str], T], stream: Optional[_TableStream] = None) -> T:
        if self.stopping():
            raise ConsoleInterrupted("stopping: not sent", command=command)
        reply: Reply = self._console.command(command, enough=stream.enough if stream is not None else None)
        if reply.partial and stream is not None:
            return stream.parse(reply.text)  # type: ignore[return-value]
        if not reply.ok:
            if is_error_reply(reply.text) is not None:
                raise _Rejected(reply)
            # no completion line and no error message: the completion line was garbled
            raise ParseError("reply without its completion line (garbled?)")
        return parse(reply.text)

    def _ask(
        self,
        command: str,
        parse: Callable[[str], T],
        vote: "Vote[T]" = _vote_whole,
        reject_family: bool = True,
        stream: Optional[Callable[[List[T]], Optional[_TableStream]]] = None,
    ) -> Optional[T]:
        """The confirmed reply, or None (rejected by the firmware, or no two reads agreed).

        ``stream``: given the reads so far, how a confirming read may end before the reply does.

        Raises ``ConsoleError`` when the console went silent, the port was lost or a stop
        was requested: the caller ends the poll instead of trying more commands.
        ``reject_family`` False: an error reply means "no such unit" and raises ``_Rejected``.
        """
        if reject_family and _family(command) in self.rejected:
            return None
        reads: List[T] = []
        failures: List[str] = []
        result: Optional[T] = None
        while len(reads) + len(failures) < _MAX_EXCHANGES and len(failures) < _MAX_FAILURES:
            try:
                reads.append(self._exchange(command, parse, stream(reads) if stream is not None else None))
                self._answered.add(_family(command))
            except _Rejected as exc:
                if not reject_family:
                    raise
                self._rejected(command, exc.reply)
                return None
            except ConsoleError as exc:
                if _silent(exc):
                    raise
                failures.append(str(exc))
                logger.debug("%s failed (%s); trying again", command, exc)
                continue
            except ParseError as exc:
                failures.append(str(exc))
                logger.debug("%s did not parse (%s); trying again", command, exc)
                continue
            result, settled = vote(reads)
            if settled:
                self._answers_again(command)
                if len(reads) > 2 or failures:
                    self._doubt(command, "needed %d reads to agree" % (len(reads) + len(failures)), logged=False)
                return result
        if result is not None:  # partly confirmed (pwr rows): the unconfirmed units are unknown
            self._doubt(command, "reads disagreed; unconfirmed values are left unknown this poll")
            return result
        reason = failures[-1] if failures else "%d reads that disagree" % len(reads)
        self._failures.fault(command, logging.WARNING, "'%s' gave no confirmed reply, dropped: %s", command, reason)
        return None

    def _answers_again(self, command: str) -> None:
        self._failures.recovered(command, "'%s' answers again", command)
        self._doubts.forget(command)

    def _doubt(self, command: str, message: str, logged: bool = True) -> None:
        if not logged:
            logger.debug("'%s': %s", command, message)
        else:
            self._doubts.fault(command, logging.WARNING, "'%s': %s (line noise?)", command, message)

    def _rejected(self, command: str, reply: Reply) -> None:
        family = _family(command)
        if family in self._answered:
            # The firmware knows the command: the unit left between the pwr table and this command.
            self._doubts.fault(
                command, logging.INFO, "'%s' answered '%s': the unit is not there now; asked again later", command, reply.error
            )
            return
        logger.info("the console rejects '%s' (%s); not asking '%s' again", command, reply.error, family)
        self.rejected.add(family)

    # -- the poll ------------------------------------------------------------
    def read(self, full: bool = False, deadline: Optional[float] = None) -> Bank:
        """A whole poll in one call (``--once``, tests): the state, then everything else, then the bank."""
        self.read_state()
        self.read_more(full=full, deadline=deadline)
        return self.bank()

    def read_state(self) -> Bank:
        """Phase 1: the units' rows, confirmed and cross-checked; raises ``PollFailed`` without them."""
        self.polls += 1
        now = self._clock()
        try:
            rows = self._read_rows()
        except ConsoleError as exc:
            raise PollFailed("no trustworthy pwr data this poll: %s" % exc) from exc
        if rows is None:
            raise PollFailed("no trustworthy pwr data this poll")
        seconds = now - self._state_time if self._state_time is not None else 0.0
        self._state_time = now
        present: List[int] = []
        for row in rows:
            battery = self.batteries.setdefault(row.address, Battery(row.address))
            if not row.present:
                self._jumps.forget(row.address)
            else:
                row, held = self._jumps.check(row, seconds, battery.cells)
                for note in held:
                    logger.warning("%s: not believed until the next poll confirms it", note)
                present.append(row.address)
            battery.detail_due = battery.detail_due or self._status_changed(battery.row, row)
            battery.row = row
            battery.row_time = now
            if row.present and row != unknown_row(row.address) and self._lacks_basics(row) and battery.detail is not None:
                battery.row = _row_from_detail(row, battery.detail)
        self._present = present
        self._recheck_cells(now)
        return self.bank()

    def _recheck_cells(self, now: float) -> None:
        """Read again at once the cell table of a unit whose row contradicts it: one of the two is
        wrong, and a fresh table decides (a real change is then believed in this very poll)."""
        for address in self._present:
            battery = self.batteries[address]
            if battery.row is not None and table_contradiction(battery.row, battery.cells) is not None:
                try:
                    self._read_cells_of(address)
                except ConsoleError as exc:
                    logger.debug("re-reading the cells of %d: %s", address, exc)
                    return

    def read_more(self, full: bool = False, deadline: Optional[float] = None) -> None:
        """Phase 2: details, identity and cells for the next polls, until ``deadline`` (monotonic).

        Ends early, without raising, when the console falls silent or a stop is requested.
        """
        try:
            self._read_more(full or self.polls == 1, self._clock(), deadline)
            self._console.finish()  # a reply that ended early for us (the pwr table): its rest before the pause
        except ConsoleError as exc:
            logger.debug("poll ended early: %s", exc)

    def _read_more(self, full: bool, now: float, deadline: Optional[float]) -> None:
        for address in self._present:
            battery = self.batteries[address]
            # A protection signal in pwr N stops a charge limit: read it every poll until it clears.
            if full or battery.detail_due or detail_signals_protection(battery.detail) or self._detail_due(battery, now):
                if self._past(deadline):
                    return
                self._read_detail(battery, now)
        # Later polls: cells before identity, charge control waits for them.  (A table cut between two
        # rows, which any row count would fit, is caught by the second read that must agree.)
        # Without the pwr table (Extra2000), the cells are the only source of cell extremes: every poll.
        if full:  # the first poll: identity first, so every unit is named (barcode) from the start
            self._read_identity(self._present, full, now, deadline)
        self._read_cells(self._present, full or "pwr" in self.rejected, now, deadline)
        self._read_identity(self._present, False, now, deadline)  # one unit per poll, once due

    def bank(self) -> Bank:
        """The bank as the records stand, cross-checked: what one poll's outputs are built from."""
        present = [a for a in self._present if a in self.batteries]
        batteries: Dict[int, Battery] = {}
        for address in present:
            battery = self.batteries[address]
            batteries[address] = self._checked(battery)
        # Without a configured list, every unit seen since start is expected: one that drops out
        # of the table counts as missing (offline), not as never there.
        self._seen.update(present)
        expected = self._expected or tuple(sorted(self._seen))
        missing = tuple(a for a in expected if a not in present)
        self._log_missing(missing)
        for address in missing:
            batteries.setdefault(address, self.batteries.setdefault(address, Battery(address)))
        return Bank(
            batteries=batteries, expected=expected, missing=missing, poll_time=time.time(), complete=bool(present) and not missing
        )

    def _checked(self, battery: Battery) -> Battery:
        """A copy of ``battery`` whose row and cell table agree (both left unknown where they do not)."""
        row = battery.row
        if row is None:
            return battery
        if (
            "pwr" in self.rejected
            and row != unknown_row(row.address)
            and battery.cells is not None
            and battery.cells_time is not None
            and battery.row_time is not None
            and battery.row_time - battery.cells_time <= self._serial.stale_after
        ):
            row = _row_with_cell_extremes(row, battery.cells)  # pwr N only: the extremes come from the cells
        why = table_contradiction(row, battery.cells)
        if why is None:
            self._doubts.forget("bat %d" % battery.address)
            return dataclasses.replace(battery, row=row)
        self._doubt(
            "bat %d" % battery.address,
            "contradicts the pwr table (%s): neither is believed until a fresh cell table agrees" % why,
        )
        return dataclasses.replace(battery, row=without_cell_extremes(row), cells=None)

    def _read_rows(self) -> Optional[List[PowerRow]]:
        if "pwr" not in self.rejected:
            rows = self._ask("pwr", parse_power_table, vote=_vote_rows, stream=self._table_stream)
            if rows is not None:
                return rows
            if "pwr" not in self.rejected:
                return None
        return self._rows_from_details()

    def _table_stream(self, reads: List[List[PowerRow]]) -> Optional[_TableStream]:
        """After a whole read of the table: the next one may stop once the units that matter agree
        (present in a read, seen before or configured), so the bank is published without waiting
        for the absent slots (a second at 19200 baud)."""
        if not reads:
            return None
        needed = {row.address for rows in reads for row in rows if row.present}
        return _TableStream(list(reads), needed | self._seen | set(self._expected))

    def _rows_from_details(self) -> Optional[List[PowerRow]]:
        """Old firmware without the ``pwr`` table: one ``pwr N`` per configured (or found) unit.

        Without ``battery.addresses`` the first poll finds the units: those answering ``pwr N``
        from 1 up to the first that does not, each read (and confirmed) as it is found, so the
        search costs no read of its own.  Found once per run (a unit added later needs a
        restart, or ``battery.addresses``); a poll that fails during the search searches again.
        """
        searching = not self._expected and self._units_by_detail is None
        addresses = range(1, 17) if searching else (self._expected or self._units_by_detail or ())
        rows: List[PowerRow] = []
        now = self._clock()
        for address in addresses:
            try:
                detail = self._ask("pwr %d" % address, parse_power_detail, reject_family=False)
            except _Rejected:
                rows.append(PowerRow(address=address, present=False))  # "no such unit"
                if searching:
                    break
                continue
            if detail is None:
                return None  # no confirmed reply: this poll has no trustworthy data for the unit
            battery = self.batteries.setdefault(address, Battery(address))
            battery.detail = detail
            battery.detail_time = now
            rows.append(_row_from_detail(PowerRow(address=address, present=True), detail))
        if searching:
            self._units_by_detail = tuple(r.address for r in rows if r.present) or (1,)
            logger.info(
                "no pwr table and no battery.addresses: polling the units that answer 'pwr N': %s",
                ", ".join(str(a) for a in self._units_by_detail),
            )
        return rows

    def _detail_due(self, battery: Battery, now: float) -> bool:
        if battery.detail is None:  # never read: again once per cells_interval until it answers
            return self._due(self._asked.get(("pwr", battery.address)), self._serial.cells_interval, now)
        return self._due(battery.detail_time, self._serial.info_interval, now)

    def _last_asked(self, kind: str, address: int, answered: Optional[float]) -> Optional[float]:
        """The later of the last good read and the last try (None: never tried)."""
        tried = self._asked.get((kind, address))
        return answered if tried is None else max(tried, answered or tried)

    def _read_detail(self, battery: Battery, now: float) -> None:
        self._asked[("pwr", battery.address)] = now
        detail = self._ask("pwr %d" % battery.address, parse_power_detail)
        if detail is not None:
            battery.detail = detail
            battery.detail_time = now
            battery.detail_due = False

    def _read_cells(self, present: List[int], every: bool, now: float, deadline: Optional[float]) -> None:
        interval = self._serial.cells_interval
        if every or interval == 0:
            due = list(present)
        else:
            asked = {a: self._last_asked("bat", a, self.batteries[a].cells_time) for a in present}
            # Never read first (a reply that keeps failing is asked again once per interval), then the
            # oldest, one unit per poll: the bank refreshes fast, cells follow round-robin.
            unknown = [a for a in present if self.batteries[a].cells_time is None and self._due(asked[a], interval, now)]
            old = [a for a in present if a not in unknown and self._due(asked[a], interval, now)]
            old.sort(key=lambda a: asked[a] or 0.0)
            due = unknown + old[:1]
        for address in due:
            if self._past(deadline):
                return
            self._read_cells_of(address)

    def _read_cells_of(self, address: int) -> None:
        self._asked[("bat", address)] = self._clock()
        battery = self.batteries[address]
        cells = battery.info.cell_count if battery.info is not None else None
        table = self._ask("bat %d" % address, lambda text, a=address, n=cells: parse_cell_table(text, a, n))
        if table is not None:
            battery.cells = table
            battery.cells_time = self._clock()

    def _read_identity(self, present: List[int], full: bool, now: float, deadline: Optional[float]) -> None:
        interval = self._serial.info_interval
        due = [a for a in present if full or self._due(self.batteries[a].info_time, interval, now)]
        if not full:
            # Units never asked (a first poll cut short by its deadline) are all read as time allows,
            # so each is named by its barcode soon; after that, one unit per poll.
            never = [a for a in due if self.batteries[a].info_time is None]
            due.sort(key=lambda a: self.batteries[a].info_time or 0.0)
            due = never or due[:1]
        for address in due:
            if self._past(deadline):
                return
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

    def _past(self, deadline: Optional[float]) -> bool:
        return deadline is not None and self._clock() >= deadline

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
            self._absent.fault(address, logging.ERROR, "%s battery %d is absent from the console's pwr table", kind, address)
        for address in self._absent.keys():
            if address not in missing:
                self._absent.recovered(address, "%s battery %d is present again", kind, address)


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

    def highest(pairs: List[Tuple[float, int]]) -> Tuple[float, int]:
        return max(pairs, key=lambda pair: (pair[0], -pair[1]))  # the first cell of a tie, as min() picks

    fill = {
        "cell_voltage_low": min(volts)[0],
        "cell_voltage_low_id": min(volts)[1],
        "cell_voltage_high": highest(volts)[0],
        "cell_voltage_high_id": highest(volts)[1],
    }
    if temps and len(temps) == len(table.cells):
        fill.update(
            {
                "cell_temp_low": min(temps)[0],
                "cell_temp_low_id": min(temps)[1],
                "cell_temp_high": highest(temps)[0],
                "cell_temp_high_id": highest(temps)[1],
            }
        )
    return dataclasses.replace(row, **fill)


def _row_from_detail(row: PowerRow, detail: PowerDetail) -> PowerRow:
    """Fill a row's unknown basics from the unit's ``pwr N`` detail."""
    fill = {}
    for name in ("voltage", "current", "temperature", "soc", "base_state", "voltage_state", "current_state", "temperature_state"):
        if getattr(row, name) is None and getattr(detail, name) is not None:
            fill[name] = getattr(detail, name)
    return dataclasses.replace(row, **fill) if fill else row
