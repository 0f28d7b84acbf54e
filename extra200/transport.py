"""The battery's RS232 console: open it by URL, wake it, send one command, read its reply.

The port is opened with pyserial's ``serial_for_url``, so a local device
(``/dev/ttyUSB0``), a network bridge (``socket://host:port``, ``rfc2217://``)
and the simulator (``pylonsim://``) all work the same way.  Framing (where a
reply starts and ends) is :mod:`extra200.framing`'s job; this module moves the
bytes, keeps time, answers page prompts and recovers after failures.

Reads block in the kernel with a short port timeout, so a waiting daemon uses
no CPU, and nothing runs between commands.
"""

import errno
import importlib
import logging
import re
import time
from typing import Callable, NoReturn, Optional, Sequence, Tuple, Union

import serial

from extra200.config import AUTO, CONSOLE_BAUDS
from extra200.framing import PAGE_PROMPT, FramingError, Reply, ReplyAssembler

logger = logging.getLogger(__name__)

# The Pylon ASCII-hex frame that switches a sleeping console on (protocol doc §3).
WAKE_FRAME = b"~20014682C0048520FCC3\r"
WAKE_BAUD = 1200
LINE_END = b"\r\n"
LOGIN_COMMAND = "login debug"
WAKEUP_MODES = ("auto", "always", "never")
# Commands a console in user mode may refuse as unknown until "login debug" (Extra2000).
_DEBUG_COMMANDS = ("pwr", "bat", "info", "stat")

_POLL = 0.2  # longest single blocking read: how late a deadline or a quiet line is noticed
_WAKE_MARGIN = 0.3  # after the wake frame has clocked out (USB adapters buffer a little)
_DRAIN_LIMIT = 2.0  # longest time spent discarding a reply nobody wants
# A prompt at the start of a line, followed by a line end or by nothing yet.
_PROMPT_SEEN = re.compile(rb"(?:^|[\r\n])([A-Za-z][A-Za-z0-9_]{0,19}>)(?=[\r\n]|\Z)")
_PROMPT_AT_END = re.compile(rb"(?:^|[\r\n])([A-Za-z][A-Za-z0-9_]{0,19}>)\Z")
_NON_TEXT = re.compile(rb"[^\x20-\x7e\t\r\n]")
_REPLY_END = re.compile(rb"\$\$[\r\n]+([A-Za-z][A-Za-z0-9_]{0,19}>)\Z")


_GATHER_BYTES = 32  # see _read_some
_CHECK_EVERY = 0.005  # seconds between looks at the input queue while waiting without blocking
# After a probe's prompt, how long the line must be quiet before the console counts as settled: a second
# prompt ("\r\n" may draw two) arrives within the console's latency plus the prompt's own bytes.
_SETTLE_QUIET = 0.03
_PROMPT_BYTES = 16


# Failures are raised, not logged above DEBUG here: the poller and the daemon report each fault
# once when it starts and once when it ends, instead of once per exchange.
class ConsoleError(Exception):
    """A console exchange failed; ``str()`` names the port and the command."""

    def __init__(self, message: str, port: str = "", command: Optional[str] = None, raw: bytes = b"") -> None:
        super().__init__(message)
        self.message = message
        self.port = port
        self.command = command
        self.raw = raw  # what was received, for diagnosis

    def __str__(self) -> str:
        where = self.port or "console"
        if self.command is None:
            return "%s: %s" % (where, self.message)
        return "%s, command %r: %s" % (where, self.command, self.message)


class PortUnavailable(ConsoleError):
    """The port cannot be opened (no such device, permission denied, busy, bad URL)."""


class PortLost(ConsoleError):
    """The port failed during use (USB adapter unplugged, bridge gone); it has been closed."""


class ConsoleTimeout(ConsoleError):
    """No complete reply within the command's timeout."""


class ConsoleGarbled(ConsoleError):
    """The reply cannot be trusted: corrupted framing or garbage on the line."""


class ConsoleSilent(ConsoleError):
    """No prompt, even after the wake-up sequence."""


class ConsoleInterrupted(ConsoleError):
    """A stop request ended the exchange; the console state is unknown (resynchronise before reuse)."""


_GARBAGE_HINT = (
    "likely a baud rate mismatch (the console runs at %d 8N1), the wrong port "
    "(RS485/CAN instead of Console) or a missing RS232 level converter"
)


def _open_failure_reason(exc: BaseException) -> str:
    """The OS reason for a failed open, in words a user can act on."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return "no such device (is the adapter plugged in? check the path): %s" % exc
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: add the user to the dialout group (sudo usermod -aG dialout USER, then log in again): %s" % exc
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return "port busy: another program has it open (a second client corrupts the console): %s" % exc
    return str(exc)


def _register_simulator() -> None:
    """Let pyserial find ``pylonsim://`` when the simulator package is installed."""
    try:
        module = importlib.import_module("extra200.simulator")
    except ImportError as exc:
        if exc.name not in ("extra200.simulator", "extra200"):
            logger.warning("the simulator package is present but cannot be imported: %s", exc)
        return
    register = getattr(module, "register", None)
    if callable(register):
        register()


class Console:
    """One battery console.  Not thread-safe: one exchange at a time."""

    # Wake-up pacing; instances may override these (tests use shorter waits).
    probe_wait = 1.0  # how long one line end may take to bring a prompt
    probes_before_wake = 1  # plain line ends tried before the wake frame ("auto")
    # An awake console answers a line end within tens of milliseconds: before the wake frame a short wait
    # is enough (a slow one just gets the frame, which is harmless, and the full probe_wait after it).
    quick_probe_wait = 0.25
    probes_after_wake = 4  # line ends tried after the wake frame

    def __init__(
        self,
        url: str,
        baud: Union[int, str] = 115200,
        command_timeout: float = 5.0,
        wakeup: str = "auto",
        login_debug: Union[bool, str] = False,
    ) -> None:
        """``baud`` ``auto``: found by ``wake`` among ``CONSOLE_BAUDS`` (``baud`` then says which answered).
        ``login_debug`` ``auto``: log in only when the console refuses a data command as unknown."""
        if wakeup not in WAKEUP_MODES:
            raise ValueError("wakeup must be one of %s, not %r" % (", ".join(WAKEUP_MODES), wakeup))
        self.url = url
        self.auto_baud = baud == AUTO
        self.baud = CONSOLE_BAUDS[0] if self.auto_baud else int(baud)
        self.command_timeout = command_timeout
        self.wakeup = wakeup
        self.login_debug = login_debug
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_round_trip: Optional[float] = None
        self._port: Optional[serial.SerialBase] = None
        self._debug_confirmed = False  # a debug prompt was seen after logging in
        self._need_login = False
        self._probe_garbage = 0  # non-text bytes seen while probing for a prompt
        # The owner's stop request: a pending exchange ends within one port timeout (_POLL)
        # instead of waiting out ``command_timeout``, so a service stops in time.
        self.interrupted: Callable[[], bool] = lambda: False
        self._auto_login_tried = False
        # A reply returned before its end (``command(enough=...)``): its rest is read before the next exchange.
        self._unfinished: Optional[ReplyAssembler] = None

    # -- port --------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._port is not None and bool(self._port.is_open)

    def open(self) -> None:
        """Open the port (8N1, no flow control, exclusive where supported)."""
        if self.is_open:
            return
        if "://" in self.url:  # only URLs can name the simulator; device paths never need it
            _register_simulator()
        try:
            port = serial.serial_for_url(self.url, do_not_open=True)
            port.baudrate = self.baud
            port.bytesize = serial.EIGHTBITS
            port.parity = serial.PARITY_NONE
            port.stopbits = serial.STOPBITS_ONE
            port.xonxoff = False
            port.rtscts = False
            port.dsrdtr = False
            port.timeout = _POLL
            port.write_timeout = max(1.0, self.command_timeout)
            # A second program on the console interleaves its commands with ours.
            port.exclusive = True
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = _open_failure_reason(exc)
            logger.debug("cannot open %s: %s", self.url, reason)
            raise PortUnavailable("cannot open: %s" % reason, port=self.url) from exc
        self._port = port
        self._need_login = False
        self._auto_login_tried = False
        logger.info("opened %s at %d baud", self.url, self.baud)

    def close(self) -> None:
        port, self._port = self._port, None
        self._unfinished = None
        if port is None:
            return
        try:
            port.close()
        except (serial.SerialException, OSError) as exc:
            logger.debug("closing %s: %s", self.url, exc)

    def __enter__(self) -> "Console":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- wake-up -----------------------------------------------------------

    def wake(self) -> None:
        """Make sure the console shows a prompt; send the wake-up frame if needed.

        ``auto``: line ends first, the 1200-baud frame only if they get no
        prompt; ``always``: the frame first; ``never``: line ends only.
        Logs in with ``login debug`` when configured and the prompt is not a
        debug prompt (a battery that lost power comes back in user mode).
        """
        what = "wake-up"
        self._require_open(what)
        self._finish_unfinished()
        self._probe_garbage = 0
        prompt: Optional[str] = None
        if self.wakeup != "always":
            prompt = self._probe_bauds(self.probes_before_wake, what, min(self.probe_wait, self.quick_probe_wait))
        if prompt is None and self.wakeup != "never":
            logger.info("%s: sending the wake-up frame at %d baud", self.url, WAKE_BAUD)
            self._send_wake_frame(what)
            prompt = self._probe_bauds(self.probes_after_wake, what)
        if prompt is None:
            hint = "" if self.wakeup == "never" else " even after the wake-up frame"
            if self._probe_garbage:
                message = "no prompt%s, only %d bytes of garbage: %s" % (hint, self._probe_garbage, self._baud_hint(True))
            else:
                message = "no prompt%s: check the cable (Console port, TX/RX/GND), %s and that the battery is on" % (
                    hint,
                    self._baud_hint(False),
                )
            logger.debug("%s: %s", self.url, message)
            raise ConsoleSilent(message, port=self.url, command=what)
        logger.debug("%s: awake, prompt %r", self.url, prompt)
        if self._login_after_wake() and not prompt.endswith("_debug>"):
            self._login()

    def _probe(self, tries: int, what: str, wait: Optional[float] = None) -> Optional[str]:
        """Send line ends until a prompt answers (each within ``wait``, default ``probe_wait``); return it, or None."""
        for _ in range(tries):
            self._discard_waiting(what)
            self._write(LINE_END, what)
            data, found = self._read_until(
                lambda buf: _PROMPT_SEEN.search(buf) is not None, self.probe_wait if wait is None else wait, what
            )
            if _NON_TEXT.search(data):
                self._probe_garbage += len(data)
            if found:
                # "\r\n" may draw two prompts; let the second one arrive and go.
                self._settle(what)
                return _PROMPT_SEEN.findall(data)[-1].decode("ascii")
        return None

    # -- the console's baud (serial.baud: auto) ---------------------------------

    def prefer_baud(self, baud: Optional[int]) -> None:
        """With ``serial.baud: auto``, try ``baud`` first (the one that answered last time)."""
        if self.auto_baud and baud in CONSOLE_BAUDS and not self.is_open:
            self.baud = baud

    def _probe_bauds(self, tries: int, what: str, wait: Optional[float] = None) -> Optional[str]:
        """``_probe`` at the current baud; with ``auto``, then once at each other baud consoles use.

        A console at another baud hears garbage and answers garbage (or
        nothing): only a prompt at the right baud is text.  Nothing found:
        back at the baud tried first.
        """
        prompt = self._probe(tries, what, wait)
        if prompt is not None or not self.auto_baud:
            return prompt
        first = self.baud
        for baud in CONSOLE_BAUDS:
            if baud == first:
                continue
            self._set_baud(baud, what)
            # A second prompt confirms it: garbage at a wrong baud never looks like one twice in a row.
            prompt = self._probe(1, what, wait) and self._probe(1, what, wait)
            if prompt is not None:
                logger.info("%s: the console answers at %d baud", self.url, baud)
                return prompt
        self._set_baud(first, what)
        return None

    def _set_baud(self, baud: int, what: str) -> None:
        port = self._require_open(what)
        logger.debug("%s: trying %d baud", self.url, baud)
        try:
            port.baudrate = baud
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, what)
        self.baud = baud

    def _baud_hint(self, garbage: bool) -> str:
        """What to check about the baud when no prompt came."""
        others = ", ".join(str(b) for b in CONSOLE_BAUDS if b != self.baud)
        if self.auto_baud:
            tried = "no prompt at %s baud (serial.baud: auto tried each)" % ", ".join(str(b) for b in CONSOLE_BAUDS)
            return tried + (
                "; the wrong port (RS485/CAN instead of Console) or a missing RS232 level converter" if garbage else ""
            )
        if garbage:
            return _GARBAGE_HINT % self.baud + "; bauds worth trying: %s, or serial.baud: auto" % others
        return "the baud rate (%d; consoles also use %s: serial.baud: auto tries them)" % (self.baud, others)

    def _send_wake_frame(self, what: str) -> None:
        port = self._require_open(what)
        # pyserial's socket:// handler cannot change the far end's baud; send anyway.
        switch = not self.url.lower().startswith("socket://")
        try:
            if switch:
                port.baudrate = WAKE_BAUD
            self._write(WAKE_FRAME, what)
            port.flush()
            # flush() may return before a USB adapter has clocked the bytes out.
            time.sleep(len(WAKE_FRAME) * 10.0 / WAKE_BAUD + _WAKE_MARGIN)
            if switch:
                port.baudrate = self.baud
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, what)
        self._discard_waiting(what)

    def _login_after_wake(self) -> bool:
        """Log in after waking: when configured, or (auto) when this console needed it before."""
        return self.login_debug is True or (self.login_debug == AUTO and self._debug_confirmed)

    def _login_needed_for(self, command: str, reply: Reply) -> bool:
        """``login_debug: auto``: a data command refused as unknown in user mode asks for one login."""
        if self.login_debug != AUTO or self._auto_login_tried or reply.ok:
            return False
        refused = (reply.error or "").strip().startswith("Unknown command")
        if not refused or reply.prompt.endswith("_debug>") or command.split()[0] not in _DEBUG_COMMANDS:
            return False
        self._auto_login_tried = True
        logger.info("%s: the console refuses %r in user mode; logging in with 'login debug'", self.url, command)
        return True

    def _login(self) -> None:
        """Send ``login debug`` and check that a debug prompt comes back."""
        what = LOGIN_COMMAND
        self._discard_waiting(what)
        self._write(LOGIN_COMMAND.encode("ascii") + b"\r", what)
        # Read to "$$" + prompt without demanding an exact echo (the password
        # might not be echoed verbatim); any final prompt will do at the limit.
        data, _ = self._read_until(lambda buf: _REPLY_END.search(buf) is not None, self.command_timeout, what)
        found = _PROMPT_AT_END.search(data)
        prompt = found.group(1).decode("ascii") if found else None
        if prompt is not None and prompt.endswith("_debug>"):
            self._debug_confirmed = True
            logger.info("%s: logged in, prompt %s", self.url, prompt)
            return
        logger.warning(
            "%s: 'login debug' did not bring a debug prompt (got %r); commands that need debug mode will fail",
            self.url,
            prompt,
        )
        if prompt is None:
            self._resync(what)

    # -- commands ----------------------------------------------------------

    def command(
        self, command: str, timeout: Optional[float] = None, enough: Optional[Callable[[Sequence[str]], bool]] = None
    ) -> Reply:
        """Send one command and return its reply.

        ``enough``: called with the payload lines received so far, each time one more has
        arrived whole; once it says True, the reply is returned as it stands (``Reply.partial``)
        and its rest is read to its end before the next exchange.  For a caller that has what
        it needs early (a confirming read) and would otherwise wait for lines it does not use.

        Raises ConsoleTimeout or ConsoleGarbled (after resynchronising, so the
        next command starts clean), PortLost if the device went away, and
        ConsoleError on a closed console.
        """
        command = command.strip()
        if not command or not all(" " <= ch <= "~" for ch in command):
            raise ValueError("a console command is one line of printable ASCII, not %r" % command)
        self._require_open(command)
        self._finish_unfinished()
        if self._need_login:
            self._need_login = False
            self._login()
        limit = self.command_timeout if timeout is None else timeout
        self._discard_waiting(command)
        assembler = ReplyAssembler(command)
        started = time.monotonic()
        self._write(command.encode("ascii") + b"\r", command)
        early = self._collect(assembler, limit, enough)
        if early is not None:
            self._unfinished = assembler
            return early
        self.last_round_trip = time.monotonic() - started
        try:
            reply = assembler.reply()
        except FramingError as exc:
            logger.debug("%s: garbled reply to %r: %s", self.url, command, exc)
            logger.debug("%s: received %r", self.url, assembler.raw_bytes())
            self._resync(command)
            raise ConsoleGarbled(str(exc), port=self.url, command=command, raw=assembler.raw_bytes()) from exc
        self._watch_mode(reply.prompt)
        if self._login_needed_for(command, reply):
            self._login()
            return self.command(command, timeout, enough)
        return reply

    def _collect(
        self, assembler: ReplyAssembler, limit: float, enough: Optional[Callable[[Sequence[str]], bool]] = None
    ) -> Optional[Reply]:
        """Feed ``assembler`` until its reply is complete (None), or until ``enough`` (the partial reply)."""
        command = assembler.command
        deadline = time.monotonic() + limit
        lines_seen = assembler.line_count
        while not assembler.complete:
            if time.monotonic() >= deadline:
                raise self._incomplete(assembler, limit)
            data = self._read_some(command)
            if data:
                assembler.feed(data)
            if assembler.needs_continue:
                self._write(b"\r", command)
                assembler.continue_sent()
            if enough is not None and assembler.line_count > lines_seen:
                lines_seen = assembler.line_count
                lines = assembler.lines_so_far()
                if lines is not None and enough(lines):
                    return assembler.partial_reply()
        return None

    def finish(self) -> None:
        """Read to its end a reply returned early (``command(enough=...)``); nothing to do otherwise."""
        if self._unfinished is not None:
            self._require_open("the rest of %r" % self._unfinished.command)
            self._finish_unfinished()

    def _finish_unfinished(self) -> None:
        """Read the rest of a reply returned early, to its end, so the next exchange starts clean.

        The rest is not used (the caller had what it needed), so a rest that does not arrive whole
        costs a resynchronisation and a DEBUG line, nothing more.
        """
        assembler, self._unfinished = self._unfinished, None
        if assembler is None:
            return
        try:
            self._collect(assembler, self.command_timeout)
            assembler.reply()
            return
        except (ConsoleTimeout, ConsoleGarbled) as exc:  # _collect has resynchronised already
            problem: Exception = exc
        except FramingError as exc:
            problem = exc
            self._resync(assembler.command)
        logger.debug("%s: the rest of %r did not arrive whole: %s", self.url, assembler.command, problem)

    def _incomplete(self, assembler: ReplyAssembler, limit: float) -> ConsoleError:
        """Classify, log and resynchronise after a reply that did not complete."""
        command = assembler.command
        raw = assembler.raw_bytes()
        error: Optional[ConsoleError] = None
        if not raw:
            message = "no answer within %.1f s" % limit
        elif not assembler.echo_seen and assembler.garbage_seen:
            message = "%d bytes of garbage and no echo: %s" % (len(raw), _GARBAGE_HINT % self.baud)
            error = ConsoleGarbled(message, port=self.url, command=command, raw=raw)
        elif not assembler.echo_seen:
            message = "no echo of the command in %d bytes within %.1f s" % (len(raw), limit)
        else:
            message = "reply cut short: %d bytes, no closing '$$' and prompt within %.1f s" % (len(raw), limit)
        logger.debug("%s: %r: %s", self.url, command, message)
        if raw:
            logger.debug("%s: received %r", self.url, raw)
        self._resync(command)
        return error or ConsoleTimeout(message, port=self.url, command=command, raw=raw)

    def _watch_mode(self, prompt: str) -> None:
        """Notice a console that fell back to user mode (power loss) while logged in."""
        if self.login_debug and self._debug_confirmed and prompt and not prompt.endswith("_debug>"):
            logger.warning(
                "%s: the console is back in user mode (prompt %s), probably after a power loss; logging in again",
                self.url,
                prompt,
            )
            self._need_login = True

    def _resync(self, what: str) -> None:
        """Bring the console back to an idle prompt: drain, then line ends until a prompt."""
        self._drain(what)
        for _ in range(3):
            self._write(LINE_END, what)
            data, found = self._read_until(_ends_idle, self.probe_wait, what)
            if found and data.endswith(PAGE_PROMPT):
                continue  # the line end goes on to the next page; keep going
            if found:
                self._drain(what)
                logger.debug("%s: resynchronised after %r", self.url, what)
                return
        # Not a warning: the failure that led here has been reported already.
        logger.info("%s: no prompt after the failed %r; the next command may fail too", self.url, what)

    # -- bytes -------------------------------------------------------------

    def _require_open(self, what: str) -> serial.SerialBase:
        port = self._port
        if port is None or not port.is_open:
            raise ConsoleError("the port is not open", port=self.url, command=what)
        return port

    def _lost(self, exc: BaseException, what: str) -> NoReturn:
        logger.warning("%s: the port failed during %r and was closed: %s", self.url, what, exc)
        self.close()
        raise PortLost("port failed (device unplugged or bridge gone): %s" % exc, port=self.url, command=what) from exc

    def _write(self, data: bytes, what: str) -> None:
        port = self._require_open(what)
        logger.debug("%s -> %r", self.url, data)
        try:
            port.write(data)
        except serial.SerialTimeoutException as exc:
            logger.warning("%s: writing %r blocked: %s", self.url, what, exc)
            raise ConsoleTimeout("write blocked: %s" % exc, port=self.url, command=what) from exc
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, what)
        self.bytes_out += len(data)

    def _read_some(self, what: str) -> bytes:
        """What has arrived, or wait up to the port timeout for the first byte."""
        port = self._require_open(what)
        if self.interrupted():
            raise ConsoleInterrupted("stop requested", port=self.url, command=what)
        try:
            data = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, what)
        if data:
            self.bytes_in += len(data)
            logger.debug("%s <- %r", self.url, data)
            if len(data) < _GATHER_BYTES:
                # The console sends in bursts: let a few dozen bytes gather before the next read
                # instead of waking once per byte (most of the CPU a poll costs); at most 10 ms.
                time.sleep(min(_GATHER_BYTES * 10.0 / max(self.baud, 1200), 0.01))
        return bytes(data)

    def _read_until(self, done: Callable[[bytes], bool], limit: float, what: str) -> Tuple[bytes, bool]:
        deadline = time.monotonic() + limit
        data = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # A blocking read may overrun the limit by a port timeout: near the limit, only read what came.
            chunk = self._read_some(what) if remaining >= _POLL or self._input_within(remaining, what) else b""
            if chunk:
                data += chunk
                if done(data):
                    return data, True
        return data, False

    def _input_within(self, seconds: float, what: str) -> bool:
        """Whether input arrives within ``seconds`` (checked every few milliseconds, without blocking)."""
        port = self._require_open(what)
        deadline = time.monotonic() + seconds
        while True:
            try:
                if port.in_waiting:
                    return True
            except (serial.SerialException, OSError) as exc:
                self._lost(exc, what)
            if time.monotonic() >= deadline:
                return False
            time.sleep(_CHECK_EVERY)

    def _settle(self, what: str) -> None:
        """Discard input until the line has been quiet for as long as a prompt takes to arrive."""
        quiet = _SETTLE_QUIET + _PROMPT_BYTES * 10.0 / max(self.baud, WAKE_BAUD)
        deadline = time.monotonic() + _DRAIN_LIMIT
        while time.monotonic() < deadline and self._input_within(quiet, what):
            self._discard_waiting(what)

    def _drain(self, what: str) -> None:
        """Discard input until the line has been quiet for one poll period."""
        deadline = time.monotonic() + _DRAIN_LIMIT
        while time.monotonic() < deadline:
            if not self._read_some(what):
                return

    def _discard_waiting(self, what: str) -> None:
        """Drop bytes already waiting (late prompts, noise) without blocking."""
        port = self._require_open(what)
        try:
            waiting = port.in_waiting
            stale = port.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, what)
        if stale:
            self.bytes_in += len(stale)
            logger.debug("%s: discarding %r before %r", self.url, bytes(stale), what)


def _ends_idle(data: bytes) -> bool:
    """The console stopped at a prompt or at a page prompt."""
    return _PROMPT_AT_END.search(data) is not None or data.endswith(PAGE_PROMPT)
