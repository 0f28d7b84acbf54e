"""Optional MariaDB / MySQL recording, with an on-disk spool so that no poll is lost.

Each poll becomes one row per unit in ``battery_readings`` (every ``pwr``
column, the ``pwr N`` detail and the derived figures), one row per cell in
``cell_readings`` when a fresh ``bat N`` was read (columns by
``cells.level``), and one row per event change in ``battery_events``.  Times
are the poll's time, stored as UTC ``DATETIME(6)``.

Nothing waits for the database.  ``record`` only appends the poll's rows to
the spool, an append-only set of JSON-lines segment files on persistent
storage, fsynced, and returns.  A background thread owns the connection and
writes the spool in order, one transaction per poll, and moves the spool's
cursor on only after the commit.  When the database is down or slow, polls
pile up in the spool (and survive a daemon restart) until it is back.  Every
row has a unique key (poll time, unit [, cell / event]) and is inserted with
``ON DUPLICATE KEY UPDATE`` doing nothing, so a poll written again after a
crash between the commit and the cursor update is not duplicated.

The spool is bounded (``database.spool_max_mb``).  When it is full the
OLDEST waiting polls are dropped, a segment at a time, so the most recent
history survives a long outage; this is logged once per outage.

The tables are created when missing, and columns (and keys) that a newer
version adds are added in place to tables an older version created; rows
are never changed.  ``schema_sql()`` is the same schema as SQL, shipped as
``schema/extra200tomqtt.sql`` for users who create it by hand.
"""

import datetime
import errno
import fcntl
import json
import logging
import math
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .derive import BankSummary, UnitSummary
from .model import Bank, Battery
from .stats import cell_fields

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SPOOL_FORMAT = 1


# ---------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # e.g. "DOUBLE", "VARCHAR(32)"
    comment: str = ""
    null: bool = True
    default: Optional[str] = None  # SQL literal

    @property
    def max_length(self) -> Optional[int]:
        """The length of a VARCHAR column (values are cut to it, so strict mode never rejects a poll)."""
        match = re.match(r"VARCHAR\((\d+)\)", self.sql_type)
        return int(match.group(1)) if match else None

    def definition(self) -> str:
        parts = ["`%s`" % self.name, self.sql_type, "NULL" if self.null else "NOT NULL"]
        if self.default is not None:
            parts.append("DEFAULT %s" % self.default)
        if self.comment:
            parts.append("COMMENT '%s'" % self.comment.replace("'", "''"))
        return " ".join(parts)


@dataclass(frozen=True)
class Table:
    name: str
    comment: str
    columns: Tuple[Column, ...]  # after id (every table but schema_info has id first)
    unique: Tuple[str, ...] = ()  # the columns of the unique key ``poll_key``
    indexes: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    has_id: bool = True

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _real(name: str, comment: str) -> Column:
    return Column(name, "DOUBLE", comment)


def _text(name: str, comment: str, length: int = 32) -> Column:
    return Column(name, "VARCHAR(%d)" % length, comment)


def _int(name: str, comment: str) -> Column:
    return Column(name, "BIGINT", comment)


def _small(name: str, comment: str) -> Column:
    return Column(name, "SMALLINT UNSIGNED", comment)


def _flag(name: str, comment: str) -> Column:
    return Column(name, "TINYINT(1)", comment)


_TS = Column("ts", "DATETIME(6)", "poll time, UTC", null=False)
_ADDRESS = Column("address", "SMALLINT UNSIGNED", "unit number (1 = master)", null=False)

BATTERY_READINGS = Table(
    "battery_readings",
    "one row per unit per poll",
    (
        _TS,
        _ADDRESS,
        _flag("present", "0 when the pwr table shows the slot Absent"),
        _real("voltage", "V"),
        _real("current", "A, + charging"),
        _real("power", "W, + charging"),
        _real("soc", "%"),
        _real("temperature", "BMS temperature, C"),
        _real("cell_temp_low", "C"),
        _real("cell_temp_high", "C"),
        _small("cell_temp_low_cell", "cell number, 1-based"),
        _small("cell_temp_high_cell", "cell number, 1-based"),
        _real("cell_voltage_low", "V"),
        _real("cell_voltage_high", "V"),
        _small("cell_voltage_low_cell", "cell number, 1-based"),
        _small("cell_voltage_high_cell", "cell number, 1-based"),
        _real("cell_voltage_delta", "V, highest minus lowest cell"),
        _text("base_state", "Base.St: Charge / Dischg / Idle / ..."),
        _text("voltage_state", "Volt.St"),
        _text("current_state", "Curr.St"),
        _text("temperature_state", "Temp.St"),
        _text("unit_time", "the unit's clock, as printed"),
        _text("battery_voltage_state", "B.V.St"),
        _text("battery_temperature_state", "B.T.St"),
        _real("mos_temperature", "C"),
        _text("mos_temperature_state", "M.T.St"),
        _text("system_alarm_state", "SysAlarm.St"),
        _text("barcode", "module serial number", 64),
        _text("device_type", "Pytes DevType", 64),
        _real("capacity", "installed Ah"),
        _real("remaining", "Ah, SoC x capacity"),
        _real("total_capacity", "Ah, pwr N Total Coulomb"),
        _real("remaining_capacity", "Ah, pwr N Real Coulomb"),
        _real("max_voltage", "V, pwr N Max Voltage"),
        _int("charge_times", "pwr N Charge Times (a transition counter, not cycles)"),
        _text("coulomb_state", "Coul. Status"),
        _text("soh_state", "Soh. Status"),
        _text("heater_state", "Heater Status"),
        _text("protect_enabled", "Protect ENA", 255),
        _int("bat_events", "Bat Events bits"),
        _int("power_events", "Power Events bits"),
        _int("system_fault", "System Fault bits"),
        _flag("balancing", "any cell balancing"),
        _int("cycle_count", "stat CYCLE Times"),
        _real("soh", "%"),
    ),
    unique=("ts", "address"),
    indexes=(("unit_time", ("address", "ts")),),
)

CELL_READINGS = Table(
    "cell_readings",
    "one row per cell whenever a fresh bat N was read; columns by cells.level",
    (
        _TS,
        _ADDRESS,
        Column("cell", "SMALLINT UNSIGNED", "cell number, 1-based (console index + 1)", null=False),
        _real("voltage", "V"),
        _real("temperature", "C"),
        _text("base_state", "Base State"),
        _text("voltage_state", "Volt. State"),
        _text("current_state", "Curr. State"),
        _text("temperature_state", "Temp. State"),
        _real("current", "A, + charging"),
        _real("soc", "%"),
        _real("coulomb", "Ah"),
        _flag("balancing", "BAL"),
        Column("extra", "TEXT", "other columns as printed, JSON"),
    ),
    unique=("ts", "address", "cell"),
    indexes=(("unit_time", ("address", "ts")),),
)

BATTERY_EVENTS = Table(
    "battery_events",
    "an event appearing or clearing",
    (
        _TS,
        _ADDRESS,
        Column("kind", "VARCHAR(16)", "bat_events / power_events / system_fault / status / cell", null=False),
        Column("code", "VARCHAR(64)", "bit (0x2000) or status word (Volt.St=High)", null=False),
        Column("cell", "SMALLINT UNSIGNED", "cell number for cell events, else 0", null=False, default="0"),
        _text("name", "readable name", 128),
        _text("level", "info / warning", 16),
        Column("transition", "VARCHAR(16)", "appeared / cleared", null=False),
    ),
    unique=("ts", "address", "kind", "code", "cell", "transition"),
    indexes=(("unit_time", ("address", "ts")),),
)

SCHEMA_INFO = Table(
    "schema_info",
    "written by extra200tomqtt",
    (Column("name", "VARCHAR(64)", null=False), Column("value", "VARCHAR(255)")),
    has_id=False,
)

TABLES: Tuple[Table, ...] = (BATTERY_READINGS, CELL_READINGS, BATTERY_EVENTS, SCHEMA_INFO)
_TABLES_BY_NAME = {t.name: t for t in TABLES}


def create_table_sql(table: Table) -> str:
    lines: List[str] = []
    if table.has_id:
        lines.append("`id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT")
    lines.extend(c.definition() for c in table.columns)
    lines.append("PRIMARY KEY (`%s`)" % ("id" if table.has_id else table.columns[0].name))
    if table.unique:
        lines.append("UNIQUE KEY `poll_key` (%s)" % _names(table.unique))
    lines.extend("KEY `%s` (%s)" % (name, _names(cols)) for name, cols in table.indexes)
    return "CREATE TABLE IF NOT EXISTS `%s` (\n  %s\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='%s'" % (
        table.name,
        ",\n  ".join(lines),
        table.comment,
    )


def _names(columns: Sequence[str]) -> str:
    return ", ".join("`%s`" % c for c in columns)


def schema_sql() -> str:
    """The schema as an SQL script (``schema/extra200tomqtt.sql``); the program creates the same by itself."""
    parts = [
        "-- extra200tomqtt: MariaDB / MySQL schema version %d." % SCHEMA_VERSION,
        "--",
        "-- The program creates these tables itself when they are missing (and adds",
        "-- the columns of newer versions); this file is for creating them by hand:",
        "--   mariadb -u root -p -e \"CREATE DATABASE extra200tomqtt; CREATE USER 'extra200'@'%' IDENTIFIED BY '...';",
        "--     GRANT ALL ON extra200tomqtt.* TO 'extra200'@'%';\"",
        "--   mariadb -u extra200 -p extra200tomqtt < schema/extra200tomqtt.sql",
        "-- Times are UTC.  Generated from extra200/database.py (schema_sql); edit that, not this.",
        "",
    ]
    for table in TABLES:
        parts.append(create_table_sql(table) + ";")
        parts.append("")
    parts.append(
        "INSERT INTO `schema_info` (`name`, `value`) VALUES ('schema_version', '%d')\n"
        "  ON DUPLICATE KEY UPDATE `value` = `value`;" % SCHEMA_VERSION
    )
    return "\n".join(parts) + "\n"


def ensure_schema(connection: Any) -> Dict[str, List[str]]:
    """Create missing tables, add missing columns and keys; return each table's columns as they now are."""
    present: Dict[str, List[str]] = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(create_table_sql(table))
            existing = _existing_columns(cursor, table.name)
            wanted = (["id"] if table.has_id else []) + [c.name for c in table.columns]
            previous: Optional[str] = None
            for name in wanted:
                if name.lower() not in {e.lower() for e in existing} and name != "id":
                    column = table.column(name)
                    where = " AFTER `%s`" % previous if previous else " FIRST"
                    cursor.execute("ALTER TABLE `%s` ADD COLUMN %s%s" % (table.name, column.definition(), where))
                    logger.info("database: added column %s.%s", table.name, name)
                    existing.append(name)
                previous = name
            _ensure_indexes(cursor, table)
            present[table.name] = existing
        cursor.execute("SELECT `value` FROM `schema_info` WHERE `name` = 'schema_version'")
        found = cursor.fetchone()
        stored = int(found[0]) if found and str(found[0]).isdigit() else 0
        if stored > SCHEMA_VERSION:
            logger.info(
                "database schema version %d is newer than this program's %d; writing the columns it knows",
                stored,
                SCHEMA_VERSION,
            )
        elif stored < SCHEMA_VERSION:
            cursor.execute(
                "INSERT INTO `schema_info` (`name`, `value`) VALUES ('schema_version', %s) "
                "ON DUPLICATE KEY UPDATE `value` = VALUES(`value`)",
                (str(SCHEMA_VERSION),),
            )
            if stored:
                logger.info("database schema upgraded from version %d to %d", stored, SCHEMA_VERSION)
    connection.commit()
    return present


def _existing_columns(cursor: Any, table: str) -> List[str]:
    cursor.execute(
        "SELECT `COLUMN_NAME` FROM information_schema.`COLUMNS` "
        "WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` = %s ORDER BY `ORDINAL_POSITION`",
        (table,),
    )
    return [str(r[0]) for r in cursor.fetchall()]


def _ensure_indexes(cursor: Any, table: Table) -> None:
    cursor.execute(
        "SELECT DISTINCT `INDEX_NAME` FROM information_schema.`STATISTICS` "
        "WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` = %s",
        (table.name,),
    )
    have = {str(r[0]).lower() for r in cursor.fetchall()}
    wanted = [("poll_key", "UNIQUE KEY", table.unique)] if table.unique else []
    wanted += [(name, "KEY", cols) for name, cols in table.indexes]
    for name, kind, columns in wanted:
        if name.lower() not in have:
            cursor.execute("ALTER TABLE `%s` ADD %s `%s` (%s)" % (table.name, kind, name, _names(columns)))
            logger.info("database: added key %s.%s", table.name, name)


# ---------------------------------------------------------------- rows of one poll


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plus_one(index: Optional[int]) -> Optional[int]:
    return index + 1 if index is not None else None


def _clip(table: Table, values: Dict[str, Any]) -> List[Any]:
    """The row in the table's column order, text cut to the column's length."""
    row: List[Any] = []
    for column in table.columns:
        value = _number(values.get(column.name))
        limit = column.max_length
        if limit is not None and isinstance(value, str) and len(value) > limit:
            value = value[:limit]
        row.append(value)
    return row


def battery_values(battery: Battery, unit: Optional[UnitSummary], ts: float) -> Dict[str, Any]:
    """One ``battery_readings`` row as a dict (column -> value)."""
    row = battery.row
    detail = battery.detail
    values: Dict[str, Any] = {"ts": ts, "address": battery.address, "present": row.present if row else None}
    if row is not None:
        for name in (
            "voltage",
            "current",
            "soc",
            "temperature",
            "cell_temp_low",
            "cell_temp_high",
            "cell_voltage_low",
            "cell_voltage_high",
            "base_state",
            "voltage_state",
            "current_state",
            "temperature_state",
            "battery_voltage_state",
            "battery_temperature_state",
            "mos_temperature",
            "mos_temperature_state",
            "system_alarm_state",
            "barcode",
            "device_type",
        ):
            values[name] = getattr(row, name)
        values["unit_time"] = row.time
        for name in ("cell_temp_low", "cell_temp_high", "cell_voltage_low", "cell_voltage_high"):
            values[name + "_cell"] = _plus_one(getattr(row, name + "_id"))
    if detail is not None:
        for name in (
            "total_capacity",
            "remaining_capacity",
            "max_voltage",
            "charge_times",
            "coulomb_state",
            "soh_state",
            "heater_state",
            "bat_events",
            "power_events",
            "system_fault",
        ):
            values[name] = getattr(detail, name)
        values["protect_enabled"] = " ".join(detail.protect_enabled) if detail.protect_enabled else None
    if unit is not None:
        for name in ("power", "capacity", "remaining", "balancing", "cycle_count", "soh", "cell_voltage_delta"):
            values[name] = getattr(unit, name)
        # The extremes as derive.py sees them: the pwr row's, located in the last bat N when the row has no id.
        for name, extreme in (
            ("cell_temp_low", unit.cell_temp_min),
            ("cell_temp_high", unit.cell_temp_max),
            ("cell_voltage_low", unit.cell_voltage_min),
            ("cell_voltage_high", unit.cell_voltage_max),
        ):
            if extreme is not None:
                if values.get(name) is None:
                    values[name] = extreme.value
                if values.get(name + "_cell") is None:
                    values[name + "_cell"] = _plus_one(extreme.cell)
    if battery.barcode:
        values["barcode"] = battery.barcode
    return values


def cell_rows(battery: Battery, ts: float, level: str) -> List[Dict[str, Any]]:
    """The ``cell_readings`` rows of a unit's last ``bat N``: the level's columns, the others NULL."""
    if battery.cells is None or level == "off":
        return []
    fields = cell_fields(level)
    rows = []
    for cell in battery.cells.cells:
        values: Dict[str, Any] = {"ts": ts, "address": battery.address, "cell": cell.index + 1}
        for name in fields:
            values[name] = getattr(cell, name)
        if level == "high" and cell.extra:
            values["extra"] = json.dumps(cell.extra, sort_keys=True)
        rows.append(values)
    return rows


def event_values(change: Any) -> Dict[str, Any]:
    """A ``battery_events`` row from an ``events.EventChange``."""
    event = change.event
    return {
        "ts": change.time,
        "address": change.address,
        "kind": event.kind,
        "code": event.code,
        "cell": event.cell or 0,
        "name": event.name,
        "level": event.level,
        "transition": change.change,
    }


def _table_entry(table: Table, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"columns": [c.name for c in table.columns], "rows": [_clip(table, r) for r in rows]}


# ---------------------------------------------------------------- the spool


class SpoolBusy(Exception):
    """Another process holds the spool directory."""


@dataclass(frozen=True)
class Position:
    segment: int
    offset: int


class Spool:
    """Polls waiting for the database: append-only JSON-lines segments and a cursor, in one directory.

    Files: ``segment-<n>.jsonl`` (one poll per line), ``cursor.json`` (the
    segment and byte offset of the first poll not yet committed), ``lock``
    (held with ``flock`` while open, so two daemons never share a spool) and
    ``rejected.jsonl`` (polls the database refused; kept for the user).
    ``append`` and the reader methods may be called from different threads.
    """

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Small enough that dropping the oldest segment frees a fraction of the bound.
        self.segment_bytes = max(64 * 1024, min(4 * 1024 * 1024, max_bytes // 8))
        self._lock = threading.Lock()
        self._lock_file: Optional[Any] = None
        self._segments: List[int] = []
        self._sizes: Dict[int, int] = {}
        self._write_segment: Optional[int] = None
        self._write_file: Optional[Any] = None
        self._next_segment = 1  # never reused, so a stale cursor cannot point into a newer segment
        self._cursor: Optional[Position] = None
        self.pending = 0  # polls not yet committed
        self.dropped = 0  # polls dropped because the spool was full
        self.discarded = 0  # unreadable lines skipped
        self._full_logged = False

    # --- opening

    def open(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        lock_file = open(os.path.join(self.directory, "lock"), "a+")
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise SpoolBusy("%s is in use by another process" % self.directory) from None
        self._lock_file = lock_file
        for name in os.listdir(self.directory):
            match = re.match(r"segment-(\d+)\.jsonl$", name)
            if match:
                number = int(match.group(1))
                self._segments.append(number)
                self._sizes[number] = os.path.getsize(self._path(number))
        self._segments.sort()
        saved = self._read_cursor()
        self._next_segment = max(self._segments + [saved.segment if saved else 0]) + 1
        self._cursor = self._load_cursor(saved)
        self.pending = self._count_pending()
        if self.pending:
            logger.info("database spool %s: %d polls waiting from before", self.directory, self.pending)

    def _path(self, segment: int) -> str:
        return os.path.join(self.directory, "segment-%012d.jsonl" % segment)

    def _read_cursor(self) -> Optional[Position]:
        try:
            with open(os.path.join(self.directory, "cursor.json"), encoding="utf-8") as handle:
                data = json.load(handle)
            return Position(int(data["segment"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _load_cursor(self, saved: Optional[Position]) -> Optional[Position]:
        """Where to resume: the saved cursor, else the first segment after it, else the very start.

        Without a usable cursor (none yet, or torn by a power cut) everything
        is written again; the unique keys make the repeats no-ops.
        """
        if not self._segments:
            return None
        if saved is not None:
            if saved.segment in self._sizes and saved.offset <= self._sizes[saved.segment]:
                return saved
            later = [s for s in self._segments if s > saved.segment]
            if saved.segment not in self._sizes and later:
                return Position(later[0], 0)  # its segment was finished and deleted
        return Position(self._segments[0], 0)

    def _count_pending(self) -> int:
        if self._cursor is None:
            return 0
        total = 0
        for segment in self._segments:
            if segment < self._cursor.segment:
                continue
            offset = self._cursor.offset if segment == self._cursor.segment else 0
            total += self._count_lines(segment, offset)
        return total

    def _count_lines(self, segment: int, offset: int = 0) -> int:
        try:
            with open(self._path(segment), "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return 0
        return data.count(b"\n")

    # --- writing

    def append(self, entry: Dict[str, Any]) -> None:
        """Add one poll at the end, on disk (fsynced) before returning; drop the oldest polls when full."""
        line = (json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            size = self._sizes[self._write_segment] if self._write_file is not None and self._write_segment else None
            if size is None or (size > 0 and size + len(line) > self.segment_bytes):
                self._start_segment()
            assert self._write_file is not None and self._write_segment is not None
            size = self._sizes[self._write_segment]
            try:
                self._write_file.write(line)
                self._write_file.flush()
                os.fsync(self._write_file.fileno())
            except OSError:
                self._abandon_segment(size)
                raise
            self._sizes[self._write_segment] = size + len(line)
            if self._cursor is None:
                self._cursor = Position(self._write_segment, size)
            self.pending += 1
            self._enforce_bound()

    def _start_segment(self) -> None:
        if self._write_file is not None:
            self._write_file.close()
            self._write_file = None
        number = self._next_segment
        self._write_file = open(self._path(number), "ab")
        self._next_segment += 1
        self._write_segment = number
        self._segments.append(number)
        self._sizes[number] = 0

    def _abandon_segment(self, size: int) -> None:
        """After a failed write: cut the torn line off and write the next poll to a new segment."""
        if self._write_file is None:
            return
        try:
            self._write_file.truncate(size)
        except OSError:
            pass  # the reader skips a torn last line of an old segment
        try:
            self._write_file.close()
        except OSError:
            pass
        self._write_file = None

    def _enforce_bound(self) -> None:
        while sum(self._sizes.values()) > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments[0]
            lost = 0
            if self._cursor is not None and self._cursor.segment <= oldest:
                offset = self._cursor.offset if self._cursor.segment == oldest else 0
                lost = self._count_lines(oldest, offset)
                self._cursor = Position(self._segments[1], 0)
            self._delete_segment(oldest)
            self.pending -= lost
            self.dropped += lost
            if lost and not self._full_logged:
                self._full_logged = True
                logger.warning(
                    "database spool %s is full (%.1f MB): dropping the oldest waiting polls, %d now "
                    "(logged once per outage; the total is logged when the database is back)",
                    self.directory,
                    self.max_bytes / 1e6,
                    lost,
                )

    def _delete_segment(self, segment: int) -> None:
        try:
            os.unlink(self._path(segment))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                logger.warning("database spool: cannot delete %s: %s", self._path(segment), exc)
        self._segments.remove(segment)
        del self._sizes[segment]

    # --- reading

    def peek(self) -> Optional[Tuple[Position, Dict[str, Any]]]:
        """The first poll not yet committed and the position after it, or None when there is none."""
        with self._lock:
            while self._cursor is not None:
                cursor = self._cursor
                if cursor.segment not in self._sizes:
                    later = [s for s in self._segments if s > cursor.segment]
                    self._cursor = Position(later[0], 0) if later else None
                    continue
                try:
                    with open(self._path(cursor.segment), "rb") as handle:
                        handle.seek(cursor.offset)
                        line = handle.readline()
                except OSError as exc:
                    logger.error("database spool: cannot read %s: %s", self._path(cursor.segment), exc)
                    return None
                if not line.endswith(b"\n"):
                    if cursor.segment == self._write_segment:
                        return None  # caught up (the writer only ever adds whole lines)
                    if line:
                        self.discarded += 1
                        logger.warning(
                            "database spool: skipping an incomplete last line of %s", self._path(cursor.segment)
                        )
                    self._finish_segment(cursor.segment)
                    continue
                end = Position(cursor.segment, cursor.offset + len(line))
                try:
                    entry = json.loads(line.decode("utf-8"))
                    if not isinstance(entry, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    self.discarded += 1
                    self.pending -= 1
                    logger.warning(
                        "database spool: skipping an unreadable poll in %s: %s", self._path(cursor.segment), exc
                    )
                    self._set_cursor(end)
                    continue
                return end, entry
            return None

    def _finish_segment(self, segment: int) -> None:
        later = [s for s in self._segments if s > segment]
        self._delete_segment(segment)
        self._cursor = Position(later[0], 0) if later else None
        if self._cursor is not None:
            self._save_cursor()

    def advance(self, position: Position) -> None:
        """The poll ending at ``position`` is committed: move the cursor past it."""
        with self._lock:
            cursor = self._cursor
            if cursor is None or cursor.segment != position.segment or cursor.offset >= position.offset:
                return  # its segment was dropped meanwhile (already counted)
            self.pending -= 1
            self._set_cursor(position)
            if self.pending == 0:
                self._full_logged = False

    def _set_cursor(self, position: Position) -> None:
        self._cursor = position
        self._save_cursor()

    def _save_cursor(self) -> None:
        """Rename over the old cursor; not fsynced: after a power cut, polls replayed are skipped by the unique keys."""
        if self._cursor is None:
            return
        path = os.path.join(self.directory, "cursor.json")
        temporary = path + ".tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump({"segment": self._cursor.segment, "offset": self._cursor.offset}, handle)
            os.replace(temporary, path)
        except OSError as exc:
            logger.warning("database spool: cannot save the cursor: %s", exc)

    def reject(self, entry: Dict[str, Any], reason: str) -> None:
        """Keep a poll the database refused in ``rejected.jsonl``, for the user to look at."""
        record = {"reason": reason, "entry": entry}
        try:
            with open(os.path.join(self.directory, "rejected.jsonl"), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:
            logger.error("database spool: cannot keep a rejected poll: %s", exc)

    def size(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def close(self) -> None:
        with self._lock:
            if self._write_file is not None:
                self._write_file.close()
                self._write_file = None
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None


# ---------------------------------------------------------------- the recorder


def spool_directory(config: Any) -> str:
    """``database.spool_dir``, or ``<state_dir>/database-spool``."""
    return config.database.spool_dir or os.path.join(config.state_dir, "database-spool")


def _ssl_context(tls: Any) -> Optional[ssl.SSLContext]:
    if not tls.enabled:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file or None)
    return context


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).replace(tzinfo=None)


class DatabaseRecorder:
    """Spools every poll and writes it to MariaDB from a background thread.

    ``record`` is called by the polling loop and returns as soon as the poll
    is on disk; ``start`` / ``stop`` run the writer thread.
    """

    def __init__(self, config: Any, spool_dir: str, cells_level: str, retry_max: float = 30.0) -> None:
        self.config = config
        self.retry_max = retry_max  # longest wait between attempts while the database is unavailable
        self.cells_level = cells_level
        self.spool = Spool(spool_dir, int(config.spool_max_mb * 1e6))
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._connection: Optional[Any] = None
        self._columns: Dict[str, List[str]] = {}
        self._last_cells: Dict[int, Tuple[Optional[float], Any]] = {}
        self._open = False
        self._record_failing = False
        self._outage_since: Optional[float] = None
        self._outage_logged = False
        self.written = 0  # polls committed since start
        self.rejected = 0  # polls the database refused (kept in rejected.jsonl)

    # --- the polling loop's side

    def start(self) -> None:
        """Open the spool and start the writer thread; a spool that cannot be opened is logged and recording is off."""
        try:
            self.spool.open()
        except (OSError, SpoolBusy) as exc:
            logger.error("database recording is off: cannot open the spool %s: %s", self.spool.directory, exc)
            return
        self._open = True
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="database-writer", daemon=True)
        self._thread.start()

    def record(self, bank: Bank, summary: BankSummary, poll_time: float, events: Sequence[Any] = ()) -> bool:
        """Spool one poll's rows (never waits for the database); False when it could not be spooled (logged)."""
        if not self._open:
            return False
        try:
            self.spool.append(self._entry(bank, summary, poll_time, events))
        except Exception as exc:  # noqa: BLE001 - whatever goes wrong here, polling goes on
            if not self._record_failing:
                self._record_failing = True
                logger.error(
                    "database spool %s: cannot store a poll: %s (polls are lost until it works)",
                    self.spool.directory,
                    exc,
                    exc_info=not isinstance(exc, OSError),
                )
            return False
        if self._record_failing:
            self._record_failing = False
            logger.info("database spool %s: storing polls again", self.spool.directory)
        self._wake.set()
        return True

    def _entry(self, bank: Bank, summary: BankSummary, poll_time: float, events: Sequence[Any]) -> Dict[str, Any]:
        units = {u.address: u for u in summary.units}
        batteries = [b for _, b in sorted(bank.batteries.items()) if b.row is not None]
        tables: Dict[str, Any] = {
            BATTERY_READINGS.name: _table_entry(
                BATTERY_READINGS, [battery_values(b, units.get(b.address), poll_time) for b in batteries]
            )
        }
        if self.config.cells and self.cells_level != "off":
            cells: List[Dict[str, Any]] = []
            for battery in batteries:
                if battery.cells is not None and self._fresh_cells(battery):
                    cells.extend(cell_rows(battery, poll_time, self.cells_level))
            if cells:
                tables[CELL_READINGS.name] = _table_entry(CELL_READINGS, cells)
        if self.config.events and events:
            tables[BATTERY_EVENTS.name] = _table_entry(BATTERY_EVENTS, [event_values(c) for c in events])
        return {"v": SPOOL_FORMAT, "ts": poll_time, "tables": tables}

    def _fresh_cells(self, battery: Battery) -> bool:
        """Cell rows only for a ``bat N`` not recorded yet (cells are read less often than ``pwr``)."""
        seen = self._last_cells.get(battery.address)
        if seen is not None and seen[0] == battery.cells_time and seen[1] is battery.cells:
            return False
        self._last_cells[battery.address] = (battery.cells_time, battery.cells)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the writer (polls not yet written stay in the spool for the next start)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("database writer did not stop within %.0f s (a slow database?)", timeout)
                return
        self._thread = None
        self._close_connection()
        if self._open:
            self.spool.close()
            self._open = False

    def state(self) -> Dict[str, Any]:
        """For the diagnostics message: connected, polls waiting, written, dropped, rejected."""
        return {
            "connected": self._connection is not None,
            "pending": self.spool.pending,
            "written": self.written,
            "dropped": self.spool.dropped,
            "rejected": self.rejected,
            "spool_bytes": self.spool.size() if self._open else 0,
        }

    # --- the writer thread

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            if self._connection is None and not self._connect():
                self._stopping.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self._wake.clear()
            item = self.spool.peek()
            if item is None:
                self._wake.wait(5.0)
                continue
            position, entry = item
            if not self._write_entry(entry):
                # Connected but the write failed (server going away, read-only, timeout): back off too.
                self._stopping.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self.spool.advance(position)
            delay = 0.5
            if self._outage_since is not None:
                self._recovered()

    def _connect(self) -> bool:
        import pymysql  # here, so the module imports without it when recording is off

        config = self.config
        try:
            connection = pymysql.connect(
                host=config.host,
                port=config.port,
                user=config.user,
                password=config.password,
                connect_timeout=config.connect_timeout,
                read_timeout=config.timeout,
                write_timeout=config.timeout,
                charset="utf8mb4",
                autocommit=False,
                ssl=_ssl_context(config.tls),
            )
        except (pymysql.MySQLError, OSError, ssl.SSLError) as exc:
            self._outage(exc)
            return False
        try:
            self._use_database(connection)
            self._columns = ensure_schema(connection)
        except (pymysql.MySQLError, OSError) as exc:
            self._outage(exc)
            _close_quietly(connection)
            return False
        self._connection = connection
        if self._outage_since is None:
            logger.info("database %s:%d/%s connected", config.host, config.port, config.database)
        return True

    def _recovered(self) -> None:
        """The first commit after an outage: logged once."""
        if self._outage_logged and self._outage_since is not None:
            logger.warning(
                "database %s:%d writable again after %.0f s; %d polls still waiting, %d dropped since the start",
                self.config.host,
                self.config.port,
                time.monotonic() - self._outage_since,
                self.spool.pending,
                self.spool.dropped,
            )
        self._outage_since = None
        self._outage_logged = False

    def _use_database(self, connection: Any) -> None:
        import pymysql

        try:
            connection.select_db(self.config.database)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 1049:  # unknown database
                with connection.cursor() as cursor:
                    cursor.execute(
                        "CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4"
                        % self.config.database.replace("`", "")
                    )
                logger.info("database: created database %s", self.config.database)
                connection.select_db(self.config.database)
            else:
                raise

    def _outage(self, exc: BaseException) -> None:
        """A connection problem: logged once per outage."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "database %s:%d unavailable (%s); polls wait in %s",
                self.config.host,
                self.config.port,
                _describe(exc),
                self.spool.directory,
            )

    def _write_entry(self, entry: Dict[str, Any]) -> bool:
        """Write one poll in one transaction; True when it is committed (or rejected for good)."""
        import pymysql

        transient = (pymysql.err.OperationalError, pymysql.err.InterfaceError, pymysql.err.InternalError, OSError)
        for attempt in (1, 2):
            try:
                self._insert(entry)
                self.written += 1
                return True
            except transient as exc:
                self._outage(exc)
                self._close_connection()
                return False
            except Exception as exc:  # noqa: BLE001 - a refused poll must not stop the writer
                self._rollback()
                if attempt == 1:
                    # Perhaps a table was dropped or altered under us: make the schema right and retry once.
                    try:
                        self._columns = ensure_schema(self._connection)
                    except transient as again:
                        self._outage(again)
                        self._close_connection()
                        return False
                    continue
                self.rejected += 1
                self.spool.reject(entry, _describe(exc))
                logger.error(
                    "database refused the poll of %s: %s (kept in %s/rejected.jsonl)",
                    _iso(entry.get("ts")),
                    _describe(exc),
                    self.spool.directory,
                )
                return True
        return False

    def _insert(self, entry: Dict[str, Any]) -> None:
        connection = self._connection
        assert connection is not None
        with connection.cursor() as cursor:
            connection.begin()
            for name, data in sorted(entry.get("tables", {}).items()):
                table = _TABLES_BY_NAME.get(name)
                if table is None or not data.get("rows"):
                    continue
                known = {c.lower() for c in self._columns.get(name, [])}
                columns: List[str] = list(data["columns"])
                keep = [i for i, c in enumerate(columns) if c.lower() in known]
                if not keep:
                    continue
                sql = "INSERT INTO `%s` (%s) VALUES (%s) ON DUPLICATE KEY UPDATE `id` = `id`" % (
                    name,
                    _names([columns[i] for i in keep]),
                    ", ".join(["%s"] * len(keep)),
                )
                rows = [[_utc(r[i]) if columns[i] == "ts" else r[i] for i in keep] for r in data["rows"]]
                cursor.executemany(sql, rows)
            connection.commit()

    def _rollback(self) -> None:
        if self._connection is not None:
            try:
                self._connection.rollback()
            except Exception:  # noqa: BLE001 - the connection is being given up anyway
                self._close_connection()

    def _close_connection(self) -> None:
        if self._connection is not None:
            _close_quietly(self._connection)
            self._connection = None


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways
        pass


def _describe(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return "%s (%d)" % (args[1], args[0])
    return str(exc) or exc.__class__.__name__


def _iso(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)):
        return "?"
    return _utc(timestamp).isoformat(sep=" ", timespec="seconds") + " UTC"
