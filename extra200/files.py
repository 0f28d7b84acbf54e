"""Files that must never be seen half-written: one atomic JSON writer and a forgiving reader.

Used for the energy counters, the Home Assistant record and the status file;
and a log file handler that says once when its disk is full (or gone)
instead of printing a traceback for every record.
The document goes to a temporary file in the same directory (a rename is
atomic only within one file system), is fsynced, renamed over the old file,
and the directory is fsynced so the rename itself survives a power cut.
"""

import json
import logging
import logging.handlers
import os
import tempfile
import time
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)


def write_text_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: a crash leaves the old or the new file, never a mix.

    Raises OSError when the directory cannot be created or written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_directory(directory)


def write_json_atomic(path: str, data: Any) -> None:
    """``write_text_atomic`` for a JSON document (indented, keys sorted)."""
    write_text_atomic(path, json.dumps(data, sort_keys=True, indent=1) + "\n")


def read_json(path: str) -> Optional[Any]:
    """The JSON document in ``path``; None when the file does not exist.

    An unreadable or corrupt file is moved aside (``<path>.corrupt``), logged,
    and read as None, so one bad file never stops the daemon.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        aside = path + ".corrupt"
        try:
            os.replace(path, aside)
            logger.error("%s cannot be read (%s); moved to %s, starting afresh", path, exc, aside)
        except OSError:
            logger.error("%s cannot be read (%s); starting afresh", path, exc)
        return None


def _sync_directory(directory: str) -> None:
    """Make a rename durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ReportingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that reports a failing write once (and its recovery), never a traceback per record."""

    # A nearly full disk lets some records through between failures: only a minute without a
    # failure counts as recovered, so the report is not repeated while the disk stays full.
    RECOVERED_AFTER = 60.0

    def __init__(self, filename: str, report: Callable[[str], None], **options: Any) -> None:
        super().__init__(filename, **options)
        self._report = report
        self.failing = False
        self._last_error = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)  # calls handleError on a failed write
        if self.failing and time.monotonic() - self._last_error >= self.RECOVERED_AFTER:
            self.failing = False
            self._report("the log file %s can be written again" % self.baseFilename)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self._last_error = time.monotonic()
        if not self.failing:
            self.failing = True
            self._report("cannot write the log file %s (disk full or gone); going on without it" % self.baseFilename)
