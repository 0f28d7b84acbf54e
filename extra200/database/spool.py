"""The spool: polls kept on disk, in order, until the database has them.

An append-only set of JSON-lines segment files on persistent storage, fsynced
on every poll, and a cursor that moves on only after the database's commit.
When the database is down or slow, polls pile up here (and survive a daemon
restart) until it is back.  The spool is bounded (``database.spool_max_mb``):
when it is full the OLDEST waiting polls are dropped, a segment at a time, so
the most recent history survives a long outage; this is logged once per outage.
"""

import errno
import fcntl
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..reporting import Episodes

logger = logging.getLogger(__package__)  # "extra200.database", the name in the log lines before the split


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
        self._full = Episodes(logger)  # "full": polls dropped, until every waiting poll is written

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
            after = self._start_after(saved.segment)
            if saved.segment not in self._sizes and after is not None:
                return after  # its segment was finished and deleted
        return Position(self._segments[0], 0)

    def _start_after(self, segment: int) -> Optional[Position]:
        """The start of the first segment after ``segment``, or None when there is none."""
        later = [s for s in self._segments if s > segment]
        return Position(later[0], 0) if later else None

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
            if lost:
                self._full.fault(
                    "full",
                    logging.WARNING,
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
                    self._cursor = self._start_after(cursor.segment)
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
                        logger.warning("database spool: skipping an incomplete last line of %s", self._path(cursor.segment))
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
                    logger.warning("database spool: skipping an unreadable poll in %s: %s", self._path(cursor.segment), exc)
                    self._set_cursor(end)
                    continue
                return end, entry
            return None

    def _finish_segment(self, segment: int) -> None:
        self._delete_segment(segment)
        self._cursor = self._start_after(segment)
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
                self._full.forget("full")

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
