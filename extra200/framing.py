"""Cut one command's reply out of the Pylontech / Pytes console byte stream.

Pure: no I/O and no clock.  The transport feeds whatever bytes it reads into a
:class:`ReplyAssembler`, answers page prompts when asked, and takes the
:class:`Reply` once the assembler says it is complete.

What a reply looks like on the wire (see docs/console-protocol.md §5-§7)::

    [noise, piled prompts]  pylon>pwr \\n\\r @ \\r\\r\\n
    <payload lines, ended by \\r\\r\\n, \\r\\n\\r, \\n\\r or \\n>
    \\rCommand completed successfully\\r\\n     (missing on rejected commands)
    \\r$$\\r\\n
    \\rpylon>                                 (no line end after the prompt)

A *line end* here is any run of CR and LF bytes holding at most one LF; a
lone run of CRs also ends a line (``bmuinfo 0\\r@``, ``...\\r\\rCommand completed``).
So ``\\r\\n\\r\\r\\n\\r`` is two line ends (one blank line) and ``\\r\\r\\r\\n`` one.
"""

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

PAGE_PROMPT = b"Press [Enter] to be continued,other key to exit"
COMPLETION_LINES = ("Command completed successfully", "Command completed successfully!")
END_MARKER = b"$$"

# One line end: CRs, one LF, CRs; or a run of CRs alone.
_LINE_END = re.compile(rb"\r*\n\r*|\r+")
# A prompt the console prints when it waits for input: "pylon>", "pylon_debug>", "PYTES>".
_PROMPT = re.compile(rb"[A-Za-z][A-Za-z0-9_]*>")
_WORD_CHAR = re.compile(rb"[A-Za-z0-9_ ]")
# No console line comes near this; a longer run without a line end is noise.
_MAX_LINE = 4096
# Payload bytes must be printable ASCII (tab tolerated); anything else is line noise.
_NON_TEXT = re.compile(rb"[^\x20-\x7e\t]")
_NON_TEXT_STREAM = re.compile(rb"[^\x20-\x7e\t\r\n]")


class FramingError(Exception):
    """The bytes received for a command do not form a reply that can be trusted."""


@dataclass(frozen=True)
class Reply:
    """One command's reply, cut out of the stream."""

    command: str
    lines: Tuple[str, ...]  # payload lines, line ends and trailing whitespace removed
    ok: bool  # the "Command completed successfully[!]" line was seen
    error: Optional[str]  # for a rejected command: its first payload line
    raw: bytes  # every byte received for this command (logs, captures)
    prompt: str = ""  # the prompt that ended the reply ("pylon>", "pylon_debug>", ...)
    # The lines that had arrived when the caller had what it needed; the rest is still on its way
    # (the transport reads it to its end before the next exchange).  ``ok`` is False then.
    partial: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ReplyAssembler:
    """Collects the bytes of one command's reply, fed in any chunking.

    Lines are handled as soon as their line end is known to be complete (the
    byte after it is not CR/LF); the unfinished last line is looked at for the
    page prompt and the closing prompt, which have no line end after them.
    """

    def __init__(self, command: str) -> None:
        self.command = command
        self._want = command.strip().encode("ascii", "replace")
        self._buf = bytearray()
        self._pos = 0  # start of the line not yet handled
        self._echo_seen = False
        self._lines: List[bytes] = []
        self._at_skipped = False
        self._after_page = False  # the next blank line is the page prompt being erased
        self._end_marker = False  # "$$" seen after the echo
        self._complete = False
        self._prompt = b""
        self._problem: Optional[str] = None
        self._garbage = False
        # Before the echo: a "$$" and an echo of some other command, which
        # together mean our echo arrived garbled (or another client interfered).
        self._pre_end_marker = False
        self._pre_foreign_echo: Optional[bytes] = None
        # Page prompts: the line start of the one now pending, and of the one answered.
        self._page_pending_at: Optional[int] = None
        self._page_answered_at: Optional[int] = None

    # -- feeding -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add bytes received from the console (any chunking, even one byte)."""
        if not data:
            return
        self._buf += data
        if _NON_TEXT_STREAM.search(data):
            self._garbage = True
        if self._complete:
            return
        buf = self._buf
        while True:
            match = _LINE_END.search(buf, self._pos)
            if match is None or match.end() == len(buf):
                # The last line end may still grow (\r\r then \n), so wait for more.
                break
            line = bytes(buf[self._pos : match.start()])
            self._pos = match.end()
            self._page_pending_at = None
            self._on_line(line)
            if self._complete:
                return
        end = match.start() if match is not None else len(buf)
        if end - self._pos > _MAX_LINE:
            # Handle it as a line now rather than rescanning it on every feed.
            line = bytes(buf[self._pos : end])
            self._pos = end
            self._on_line(line)
            return
        self._on_partial(bytes(buf[self._pos : end]))

    @property
    def needs_continue(self) -> bool:
        """A page prompt is waiting for Enter (the transport sends "\\r")."""
        return not self._complete and self._page_pending_at is not None and self._page_pending_at != self._page_answered_at

    def continue_sent(self) -> None:
        self._page_answered_at = self._page_pending_at

    @property
    def complete(self) -> bool:
        """The closing "$$" and the prompt after it have arrived."""
        return self._complete

    # Diagnostics for the transport when a reply never completes.
    @property
    def echo_seen(self) -> bool:
        return self._echo_seen

    @property
    def garbage_seen(self) -> bool:
        """Some received byte was neither printable ASCII nor a line end."""
        return self._garbage

    def raw_bytes(self) -> bytes:
        """Every byte fed so far."""
        return bytes(self._buf)

    @property
    def line_count(self) -> int:
        """Payload lines received whole so far."""
        return len(self._lines)

    def lines_so_far(self) -> Optional[Tuple[str, ...]]:
        """The payload lines received whole so far, or None once anything about them is in doubt
        (line noise, a prompt mixed in, the end already reached: then only the whole reply counts)."""
        if self._problem is not None or self._complete or self._end_marker or self._garbage:
            return None
        lines = tuple(line.decode("ascii") for line in self._lines)
        return None if any(line in COMPLETION_LINES for line in lines) else lines

    def partial_reply(self) -> Reply:
        """The reply as far as it has arrived (``lines_so_far`` must not be None)."""
        lines = self.lines_so_far()
        if lines is None:
            raise FramingError("reply to %r: the part received is in doubt" % self.command)
        return Reply(command=self.command, lines=lines, ok=False, error=None, raw=bytes(self._buf), partial=True)

    # -- line handling -----------------------------------------------------

    def _on_partial(self, partial: bytes) -> None:
        """Look at the unfinished last line: closing prompt or page prompt."""
        if not partial:
            return
        if not self._echo_seen:
            if self._pre_end_marker and _PROMPT.fullmatch(partial):
                self._pre_frame_ended(partial)
            return
        if self._end_marker:
            if partial.endswith(b">"):
                self._finish(partial)
        elif PAGE_PROMPT in partial:
            self._page_pending_at = self._pos

    def _on_line(self, line: bytes) -> None:
        if self._echo_seen:
            self._on_payload_line(line)
        else:
            self._on_line_before_echo(line)

    def _is_echo(self, line: bytes) -> bool:
        text = line.rstrip(b" \t")
        want = self._want
        if not want or not text.endswith(want):
            return False
        # The echo starts a line or follows a prompt ("pylon>pwr", ">pylon_debug>getpwr")
        # or line noise the console echoed; never the tail of a longer word ("bat 11").
        return len(text) == len(want) or not _WORD_CHAR.match(text[-len(want) - 1 : -len(want)])

    def _on_line_before_echo(self, line: bytes) -> None:
        """Skip noise, piled prompts and the tail of an earlier reply."""
        if self._is_echo(line):
            self._echo_seen = True
            return
        text = line.strip()
        if text == END_MARKER:
            self._pre_end_marker = True
            return
        if self._pre_end_marker:
            if not text:
                return
            if _PROMPT.fullmatch(text):
                self._pre_frame_ended(text)
                return
            self._pre_end_marker = False
        cut = text.rfind(b">")
        if cut > 0 and text[cut + 1 :].strip() and _PROMPT.search(text[: cut + 1]):
            self._pre_foreign_echo = text[cut + 1 :].strip()

    def _pre_frame_ended(self, prompt: bytes) -> None:
        """A "$$" + prompt arrived before our echo."""
        if self._pre_foreign_echo is not None:
            # A whole reply to something that is not our command: our echo was
            # garbled, or another client is talking to the console.
            self._problem = "echo of %r not found; got a reply to %r instead" % (
                self.command,
                self._pre_foreign_echo.decode("ascii", "replace"),
            )
            self._prompt = prompt
            self._complete = True
            return
        # The end of an earlier reply's tail: keep looking for our echo.
        self._pre_end_marker = False

    def _on_payload_line(self, line: bytes) -> None:
        if self._end_marker:
            if not line.strip():
                return
            if line.endswith(b">"):
                self._finish(line)
                return
            self._fail("text %r after the closing '$$'" % line)
            self._end_marker = False
            return
        if _NON_TEXT.search(line):
            self._fail("non-text byte in line %r" % line[:200])
        if len(line) > _MAX_LINE:
            self._fail("a line of more than %d bytes" % _MAX_LINE)
        text = line.rstrip()
        if PAGE_PROMPT in text:
            self._after_page = True
            return
        if self._after_page:
            self._after_page = False
            if not text:
                return  # the device blanking the answered page prompt
        if text == END_MARKER:
            self._end_marker = True
            return
        if _PROMPT.match(text):  # a second exchange got mixed into this one
            self._fail("prompt inside the reply: %r" % text)
            return
        if text == b"@" and not self._at_skipped and not any(self._lines):
            self._at_skipped = True
            return
        self._lines.append(text)

    def _fail(self, problem: str) -> None:
        if self._problem is None:  # keep the first, it is the cause
            self._problem = problem

    def _finish(self, prompt: bytes) -> None:
        if not _PROMPT.fullmatch(prompt):
            self._fail("garbled prompt %r after '$$'" % prompt)
        self._prompt = prompt
        self._complete = True

    # -- result ------------------------------------------------------------

    def reply(self) -> Reply:
        """The reply; only once :attr:`complete`.  Raises FramingError if untrustworthy."""
        if not self._complete:
            raise FramingError("reply to %r is not complete (%d bytes)" % (self.command, len(self._buf)))
        if self._problem is not None:
            raise FramingError("reply to %r: %s" % (self.command, self._problem))
        lines = [line.decode("ascii") for line in self._lines]
        _strip_blank_ends(lines)
        ok = bool(lines) and lines[-1] in COMPLETION_LINES
        if ok:
            lines.pop()
            _strip_blank_ends(lines)
        if any(line in COMPLETION_LINES for line in lines):
            raise FramingError("reply to %r: text after the completion line" % self.command)
        error: Optional[str] = None
        if not ok:
            error = lines[0] if lines else "empty reply without a completion line"
        return Reply(
            command=self.command,
            lines=tuple(lines),
            ok=ok,
            error=error,
            raw=bytes(self._buf),
            prompt=self._prompt.decode("ascii"),
        )


def _strip_blank_ends(lines: List[str]) -> None:
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
