"""The database's tables: their columns, the schema as SQL, and bringing a live database up to it.

The tables are created when missing, and columns (and keys) that a newer
version adds are added in place to tables an older version created; rows
are never changed.  ``schema_sql()`` is the same schema as SQL, shipped as
``schema/extra200tomqtt.sql`` for users who create it by hand.
"""

import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger(__package__)  # "extra200.database", the name in the log lines before the split

SCHEMA_VERSION = 1


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
TABLES_BY_NAME = {t.name: t for t in TABLES}


def create_table_sql(table: Table) -> str:
    lines: List[str] = []
    if table.has_id:
        lines.append("`id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT")
    lines.extend(c.definition() for c in table.columns)
    lines.append("PRIMARY KEY (`%s`)" % ("id" if table.has_id else table.columns[0].name))
    if table.unique:
        lines.append("UNIQUE KEY `poll_key` (%s)" % quoted_names(table.unique))
    lines.extend("KEY `%s` (%s)" % (name, quoted_names(cols)) for name, cols in table.indexes)
    return "CREATE TABLE IF NOT EXISTS `%s` (\n  %s\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='%s'" % (
        table.name,
        ",\n  ".join(lines),
        table.comment,
    )


def quoted_names(columns: Sequence[str]) -> str:
    """Column names as SQL lists them: `a`, `b`."""
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
        "-- Times are UTC.  Generated from extra200/database/schema.py (schema_sql); edit that, not this.",
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
            cursor.execute("ALTER TABLE `%s` ADD %s `%s` (%s)" % (table.name, kind, name, quoted_names(columns)))
            logger.info("database: added key %s.%s", table.name, name)
