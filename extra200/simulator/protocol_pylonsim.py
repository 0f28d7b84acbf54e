"""pyserial URL handler ``pylonsim://``: a simulated Pylontech console inside the process.

    serial.serial_for_url("pylonsim://")                          # default scenario (us2000c-3)
    serial.serial_for_url("pylonsim://extra2000")                 # a shipped scenario by name
    serial.serial_for_url("pylonsim://?scenario=PATH_OR_NAME&drift=0&speed=10&latency=0")
    serial.serial_for_url("pylonsim://?replay=DIR")               # recorded replies from files

Options: ``scenario``, ``replay``, and the scenario keys ``speed``, ``drift``,
``latency``, ``seed``, ``paging_lines``, ``asleep``, ``console_baud``.
The port's ``baudrate`` (changeable while open) is the client's baud: the
console only understands, and is only understood, at its own.

Tests reach the live state through ``port.bank`` (``Bank``) and the shell
through ``port.console``.  Register with ``extra200.simulator.register()``.
"""

import logging
import numbers
import time
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

from .bank import Bank
from .console import Console
from .replay import ReplayDirectory
from .scenario import ScenarioError, load_scenario

logger = logging.getLogger(__name__)


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0 or 1")


_OPTIONS = {
    "speed": float,
    "drift": _flag,
    "latency": float,
    "seed": int,
    "paging_lines": int,
    "asleep": _flag,
    "console_baud": int,
}


def console_for_url(url: str) -> Console:
    """A new console for a ``pylonsim://`` URL (raises ``SerialException`` on a bad URL or scenario)."""
    parts = urlsplit(url)
    if parts.scheme != "pylonsim":
        raise SerialException("expected a pylonsim:// URL, got %r" % url)
    # pylonsim://NAME or pylonsim:///absolute/path.yaml
    scenario_name: Optional[str] = parts.netloc or (parts.path if parts.path.strip("/") else None)
    replay_dir: Optional[str] = None
    overrides: Dict[str, Any] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        value = values[-1]
        if key == "scenario":
            scenario_name = value
        elif key == "replay":
            replay_dir = value
        elif key in _OPTIONS:
            try:
                overrides[key] = _OPTIONS[key](value)
            except ValueError:
                raise SerialException("pylonsim option %s: bad value %r" % (key, value)) from None
        else:
            known = ", ".join(("scenario", "replay") + tuple(_OPTIONS))
            raise SerialException("pylonsim: unknown option %r (known: %s)" % (key, known))
    try:
        scenario = load_scenario(scenario_name, **overrides)
        replay = ReplayDirectory(replay_dir) if replay_dir else None
    except ScenarioError as exc:
        raise SerialException(str(exc)) from None
    except FileNotFoundError as exc:
        raise SerialException(str(exc)) from None
    logger.debug("pylonsim: scenario %s from %s, replay %s", scenario.name, scenario.source, replay_dir)
    return Console(scenario, replay=replay)


class Serial(SerialBase):
    """A serial port whose far end is a simulated battery console (see the module docstring)."""

    BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.console: Optional[Console] = None
        self._console_url: Optional[str] = None
        self._cancel = False
        super().__init__(*args, **kwargs)

    @property
    def bank(self) -> Bank:
        """The simulated bank's live state (opened port only)."""
        if self.console is None:
            raise PortNotOpenError()
        return self.console.bank

    def open(self) -> None:
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        # the battery outlives the connection: reopening the same URL keeps its state
        if self.console is None or self._console_url != self._port:
            self.console = console_for_url(self._port)
            self._console_url = self._port
        self._reconfigure_port()
        self.is_open = True
        self.reset_input_buffer()

    def close(self) -> None:
        # SerialBase's io.RawIOBase.close() is not called: it would forbid reopening
        self.is_open = False
        if self.console is not None:
            self.console.output.wake_waiters()

    def _reconfigure_port(self) -> None:
        if not isinstance(self._baudrate, numbers.Integral) or not 0 < self._baudrate < 2**32:
            raise ValueError("invalid baudrate: {!r}".format(self._baudrate))

    def _console(self) -> Console:
        if not self.is_open or self.console is None:
            raise PortNotOpenError()
        return self.console

    @property
    def in_waiting(self) -> int:
        return self._console().output.available()

    @property
    def out_waiting(self) -> int:
        self._console()
        return 0

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; blocks per ``timeout`` (None = until ``size`` bytes) and ``inter_byte_timeout``."""
        line = self._console().output
        clock = line.clock
        start = clock()
        deadline = None if self._timeout is None else start + self._timeout
        data = bytearray()
        last = start
        self._cancel = False
        with line.cond:
            while len(data) < size and self.is_open and not self._cancel:
                now = clock()
                chunk = line.take(size - len(data), now)
                if chunk:
                    data += chunk
                    last = now
                    continue
                until = deadline
                if self._inter_byte_timeout and data:
                    quiet_until = last + self._inter_byte_timeout
                    until = quiet_until if until is None else min(until, quiet_until)
                if until is not None and now >= until:
                    break
                due = line.next_arrival(now)
                waits = [t - now for t in (until, due) if t is not None]
                line.cond.wait(max(0.0, min(waits)) if waits else None)
        return bytes(data)

    def write(self, data: Any) -> int:
        console = self._console()
        payload = to_bytes(data)
        console.receive(payload, self._baudrate)
        return len(payload)

    def flush(self) -> None:
        """Wait until what was written has crossed the wire."""
        console = self._console()
        remaining = console.input_free_at() - console.clock()
        if remaining > 0:
            time.sleep(remaining)

    def cancel_read(self) -> None:
        self._cancel = True
        if self.console is not None:
            self.console.output.wake_waiters()

    def reset_input_buffer(self) -> None:
        self._console().output.discard_arrived()

    def reset_output_buffer(self) -> None:
        self._console()  # written bytes are already on their way

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        self._console()
        return True

    @property
    def dsr(self) -> bool:
        self._console()
        return True

    @property
    def ri(self) -> bool:
        self._console()
        return False

    @property
    def cd(self) -> bool:
        self._console()
        return True
