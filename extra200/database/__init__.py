"""Optional MariaDB / MySQL recording, with an on-disk spool so that no poll is lost.

Each poll becomes one row per unit in ``battery_readings``, one row per cell
in ``cell_readings`` when a fresh ``bat N`` was read, and one row per event
change in ``battery_events``.  ``DatabaseRecorder.record`` only puts the
poll's rows in the spool on disk and returns; a thread writes the spool to
the database, so nothing waits for it and an outage loses nothing.

In the order the data flows:
- ``schema``: the tables and their columns, ``schema_sql()`` and
  ``ensure_schema`` (create what is missing, add newer columns and keys);
- ``rows``: a poll's bank, summary and events as each table's rows (pure);
- ``spool``: the bounded on-disk queue that keeps each poll until it is written;
- ``writer``: ``DatabaseRecorder``, the connection and the writer thread
  (outages logged once, retried, recovered).
"""

from .rows import SPOOL_FORMAT, battery_values, cell_rows, event_values, poll_entry
from .schema import (
    BATTERY_EVENTS,
    BATTERY_READINGS,
    CELL_READINGS,
    SCHEMA_INFO,
    SCHEMA_VERSION,
    TABLES,
    Column,
    Table,
    create_table_sql,
    ensure_schema,
    schema_sql,
)
from .spool import Position, Spool, SpoolBusy
from .writer import DatabaseRecorder, spool_directory

__all__ = [
    "BATTERY_EVENTS",
    "BATTERY_READINGS",
    "CELL_READINGS",
    "SCHEMA_INFO",
    "SCHEMA_VERSION",
    "SPOOL_FORMAT",
    "TABLES",
    "Column",
    "DatabaseRecorder",
    "Position",
    "Spool",
    "SpoolBusy",
    "Table",
    "battery_values",
    "cell_rows",
    "create_table_sql",
    "ensure_schema",
    "event_values",
    "poll_entry",
    "schema_sql",
    "spool_directory",
]
