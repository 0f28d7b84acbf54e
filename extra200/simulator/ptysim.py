"""The simulated console on a real pseudo-terminal, so any program can open it like ``/dev/ttyUSB0``.

``PtySimulator(scenario).start()`` returns the slave's path (and points an
optional symlink at it); a background thread feeds what the client writes to
the ``Console`` and writes the console's paced output back.  The client's baud
is read from the slave's termios (``tcgetattr``) whenever bytes arrive, so a
baud mismatch and the 1200-baud wake-up behave as on a real port.

The simulator keeps its own slave descriptor open, so the terminal survives a
client closing and reopening it.  ``unplug()`` closes the terminal (the
client sees the device vanish: reads and writes fail) and removes the
symlink; ``replug()`` creates a new terminal behind the same symlink, with
the same battery state.
"""

import errno
import logging
import os
import select
import termios
import threading
import tty
from typing import Any, Dict, Optional

from .console import Console
from .replay import ReplayDirectory
from .scenario import Scenario, load_scenario

logger = logging.getLogger(__name__)


def _speed_table() -> Dict[int, int]:
    table = {}
    for baud in (
        50,
        75,
        110,
        134,
        150,
        200,
        300,
        600,
        1200,
        1800,
        2400,
        4800,
        9600,
        19200,
        38400,
        57600,
        115200,
        230400,
        460800,
        500000,
        576000,
        921600,
        1000000,
    ):
        code = getattr(termios, "B%d" % baud, None)
        if code is not None:
            table[code] = baud
    return table


class PtySimulator:
    """A simulated battery console behind a pseudo-terminal; ``start()`` / ``stop()``, or use as a context manager."""

    def __init__(
        self,
        scenario: Any = None,
        replay: Optional[str] = None,
        link: Optional[str] = None,
        console: Optional[Console] = None,
        **overrides: Any,
    ) -> None:
        if console is None:
            loaded: Scenario = load_scenario(scenario, **overrides)
            console = Console(loaded, replay=ReplayDirectory(replay) if replay else None)
        self.console = console
        self.bank = console.bank
        self.scenario = console.scenario
        self.link = os.path.abspath(link) if link else None
        self.path: Optional[str] = None
        self._speeds = _speed_table()
        self._master = -1
        self._slave = -1
        self._wake_read = -1
        self._wake_write = -1
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Create the terminal and serve it in a background thread; returns the slave's path."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("already started")
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no CR/NL translation until the client sets its own modes
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self._wake_read, self._wake_write = os.pipe()
            self.path = os.ttyname(slave)
            if self.link:
                self._make_link(self.path)
            self._stop.clear()
            self._thread = threading.Thread(target=self._serve, name="pylonsim-pty", daemon=True)
            self._thread.start()
            logger.info("simulated console %s on %s (link %s)", self.scenario.name, self.path, self.link)
            return self.path

    def stop(self) -> None:
        """Stop serving, close the terminal and remove the symlink."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stop.set()
            try:
                os.write(self._wake_write, b"x")
            except OSError:
                pass
            thread.join(timeout=10)
            self._thread = None
            for fd in (self._master, self._slave, self._wake_read, self._wake_write):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._master = self._slave = self._wake_read = self._wake_write = -1
            self._remove_link()
            # what was still on the wire is lost with the device
            self.console.output.clear()

    def unplug(self) -> None:
        """The adapter is pulled out: the device and its symlink vanish; the battery keeps its state."""
        self.stop()

    def replug(self) -> str:
        """The adapter comes back: a new terminal, behind the same symlink; returns the new path."""
        self.stop()
        return self.start()

    @property
    def device(self) -> Optional[str]:
        """The path clients should open: the symlink when there is one, else the slave."""
        return self.link or self.path

    def __enter__(self) -> "PtySimulator":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- serving

    def client_baud(self) -> int:
        """The baud the client set on the slave (0 when unknown)."""
        try:
            speed = termios.tcgetattr(self._slave)[5]
        except (termios.error, OSError):
            return 0
        return self._speeds.get(speed, 0)

    def _serve(self) -> None:
        master, wake = self._master, self._wake_read
        line = self.console.output
        pending = b""
        while not self._stop.is_set():
            now = line.clock()
            if not pending:
                pending = line.take(-1, now)
            timeout: Optional[float] = None
            if not pending:
                due = line.next_arrival(now)
                timeout = None if due is None else max(0.0, due - now)
            try:
                readable, writable, _ = select.select([master, wake], [master] if pending else [], [], timeout)
            except (OSError, ValueError):
                return
            if wake in readable:
                try:
                    os.read(wake, 64)
                except OSError:
                    pass
            if master in readable:
                try:
                    data = os.read(master, 4096)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        data = b""
                    else:
                        logger.debug("pty read: %s", exc)
                        return
                if data:
                    try:
                        self.console.receive(data, self.client_baud())
                    except Exception:  # keep serving: one bad exchange must not kill the device
                        logger.exception("simulated console failed on %r", data[:64])
            if pending and master in writable:
                try:
                    written = os.write(master, pending)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        logger.debug("pty write: %s", exc)
                        return
                    written = 0
                pending = pending[written:]

    # ------------------------------------------------------------------ link

    def _make_link(self, target: str) -> None:
        assert self.link is not None
        if os.path.lexists(self.link) and not os.path.islink(self.link):
            raise FileExistsError("%s exists and is not a symlink; not replacing it" % self.link)
        temporary = "%s.tmp-%d" % (self.link, os.getpid())
        if os.path.lexists(temporary):
            os.unlink(temporary)
        os.symlink(target, temporary)
        os.replace(temporary, self.link)

    def _remove_link(self) -> None:
        if self.link and os.path.islink(self.link) and os.readlink(self.link) == self.path:
            try:
                os.unlink(self.link)
            except OSError:
                pass
