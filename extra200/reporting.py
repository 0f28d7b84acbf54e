"""A fault logged once when it starts and once when it ends, not on every poll.

The loop meets the same fault again and again: a broker that does not answer, a full disk, a
battery gone from the ``pwr`` table.  Logged on every poll it buries the log; logged never it
hides.  So each fault is an *episode*, from its first sighting to the first success after it,
and an episode gets at most two log lines: one when it starts, one when it ends.

An ``Episodes`` object remembers which episodes are open, keyed by anything hashable (a command,
a battery address, an output's name), and logs through the logger of the class that owns it.
An episode that is never closed is a report once per run; one closed by ``forget`` ends without
a line of its own (the caller says nothing, or says something else itself).
"""

import logging
import threading
from typing import Hashable, List, Set


class Episodes:
    """Which faults have been reported and not yet recovered; safe to share between threads."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._open: Set[Hashable] = set()
        self._lock = threading.Lock()

    def fault(self, key: Hashable, level: int, message: str, *args: object, exc_info: bool = False) -> bool:
        """Open episode ``key`` and log ``message % args`` at ``level``; nothing (False) when it is open already."""
        with self._lock:
            if key in self._open:
                return False
            self._open.add(key)
        # stacklevel 2: the record names the caller's file and line, as a direct logger call would
        self._logger.log(level, message, *args, exc_info=exc_info, stacklevel=2)
        return True

    def recovered(self, key: Hashable, message: str, *args: object, level: int = logging.INFO) -> bool:
        """Close episode ``key``, logging ``message % args`` if it was open; True when it was."""
        if not self.forget(key):
            return False
        self._logger.log(level, message, *args, stacklevel=2)
        return True

    def forget(self, key: Hashable) -> bool:
        """Close episode ``key`` without a log line; True when it was open."""
        with self._lock:
            if key not in self._open:
                return False
            self._open.discard(key)
            return True

    def keys(self) -> List[Hashable]:
        """The open episodes' keys (a copy: the caller may close them while going through it)."""
        with self._lock:
            return list(self._open)
