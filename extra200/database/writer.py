"""The writer: ``DatabaseRecorder``, which spools each poll and writes the spool to MariaDB from a thread.

Nothing waits for the database.  ``record`` only appends the poll's rows to
the spool and returns.  A background thread owns the connection, brings the
schema up to date, and writes the spool in order, one transaction per poll,
moving the spool's cursor on only after the commit.  Every row has a unique
key (poll time, unit [, cell / event]) and is inserted with ``ON DUPLICATE KEY
UPDATE`` doing nothing, so a poll written again after a crash between the
commit and the cursor update is not duplicated.  A lost connection is logged
once per outage, retried with a growing pause, and its recovery logged once.
"""

import datetime
import logging
import os
import ssl
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..derive import BankSummary
from ..model import Bank, Battery
from ..reporting import Episodes
from .rows import poll_entry, recorded_units
from .schema import TABLES_BY_NAME, ensure_schema, quoted_names
from .spool import Spool, SpoolBusy

logger = logging.getLogger(__package__)  # "extra200.database", the name in the log lines before the split


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
        self._outage_since: Optional[float] = None
        # "record" (a poll cannot be spooled, from the polling loop), "outage" (from the writer thread)
        self._faults = Episodes(logger)
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
            self._faults.fault(
                "record",
                logging.ERROR,
                "database spool %s: cannot store a poll: %s (polls are lost until it works)",
                self.spool.directory,
                exc,
                exc_info=not isinstance(exc, OSError),
            )
            return False
        self._faults.recovered("record", "database spool %s: storing polls again", self.spool.directory)
        self._wake.set()
        return True

    def _entry(self, bank: Bank, summary: BankSummary, poll_time: float, events: Sequence[Any]) -> Dict[str, Any]:
        fresh: List[int] = []
        if self.config.cells and self.cells_level != "off":
            fresh = [b.address for b in recorded_units(bank) if b.cells is not None and self._fresh_cells(b)]
        return poll_entry(bank, summary, poll_time, self.cells_level, fresh, events if self.config.events else ())

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
        since = self._outage_since
        self._outage_since = None
        if since is not None:
            self._faults.recovered(
                "outage",
                "database %s:%d writable again after %.0f s; %d polls still waiting, %d dropped since the start",
                self.config.host,
                self.config.port,
                time.monotonic() - since,
                self.spool.pending,
                self.spool.dropped,
                level=logging.WARNING,
            )

    def _use_database(self, connection: Any) -> None:
        import pymysql

        try:
            connection.select_db(self.config.database)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 1049:  # unknown database
                with connection.cursor() as cursor:
                    cursor.execute(
                        "CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4" % self.config.database.replace("`", "")
                    )
                logger.info("database: created database %s", self.config.database)
                connection.select_db(self.config.database)
            else:
                raise

    def _outage(self, exc: BaseException) -> None:
        """A connection problem: logged once per outage."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        self._faults.fault(
            "outage",
            logging.WARNING,
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
                table = TABLES_BY_NAME.get(name)
                if table is None or not data.get("rows"):
                    continue
                known = {c.lower() for c in self._columns.get(name, [])}
                columns: List[str] = list(data["columns"])
                keep = [i for i, c in enumerate(columns) if c.lower() in known]
                if not keep:
                    continue
                sql = "INSERT INTO `%s` (%s) VALUES (%s) ON DUPLICATE KEY UPDATE `id` = `id`" % (
                    name,
                    quoted_names([columns[i] for i in keep]),
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
