"""The reply as text: its lines (whatever the line ends) and tokens, the framing around
the payload (echo, prompt, ``@``, completion line, ``$$``), the battery's error replies,
the echoed command's address, and the one line a parser starts from."""

import re
from typing import Callable, List, Optional, Sequence, Tuple

from .common import ParseError
from .values import _is_plain_int

# Messages of a rejected command (there is no completion line then).
_ERROR_PREFIXES = (
    "Unknown command",
    "Invalid command",
    "Command completed unccessfully",
    "Command completed unsuccessfully",
    "This version do not support",
)
_TOKEN = re.compile(r"\S+")


def _lines(text: str) -> List[str]:
    """The text split into lines, whatever mix of CR / LF ends them (blank lines kept)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _tokens(line: str) -> List[Tuple[int, str]]:
    return [(m.start(), m.group()) for m in _TOKEN.finditer(line)]


def _is_frame(stripped: str) -> bool:
    """Echo / prompt, ``@``, completion and ``$$`` lines: the framing around a payload."""
    if stripped in ("@", "$$") or stripped.startswith("Command completed"):
        return True
    head = stripped.split(None, 1)[0] if stripped else ""
    cut = head.find(">")
    # "pylon>", "PYTES>pwr", "pylon_debug>bat 1", ">pylon_debug>getpwr", "pylo_dbu>bat"
    return cut == 0 or (cut > 0 and head[:cut].replace("_", "").isalpha())


def is_error_reply(text: str) -> Optional[str]:
    """The battery's error message if the reply is a rejected command, else None.

    Recognises ``Unknown command 'soh' - try 'help'``, ``Invalid command or fail
    to excute.`` (or ``!``), ``Command completed unccessfully`` (sic) and
    ``This version do not support this command!``.
    """
    for line in _lines(text):
        stripped = line.strip()
        if stripped.startswith(_ERROR_PREFIXES):
            return stripped
    return None


def _reply_lines(text: str, what: str) -> List[str]:
    """The reply's lines; ParseError if it is the battery's error message instead."""
    message = is_error_reply(text)
    if message is not None:
        raise ParseError("%s: the battery rejected the command: %s" % (what, message))
    return _lines(text)


def _find_one(lines: Sequence[str], matches: Callable[[List[str]], bool], what: str, name: str) -> int:
    """The index of the one line whose words ``matches`` (a table header, ``Power N``,
    ``Device address``); ParseError if there is none, or more than one."""
    found = [i for i, line in enumerate(lines) if matches(line.split())]
    if not found:
        raise ParseError("%s: no %s in the reply" % (what, name))
    if len(found) > 1:
        raise ParseError("%s: %d %ss in one reply (replies run together?)" % (what, len(found), name))
    return found[0]


def _echoed_args(lines: Sequence[str], before: int, command: str) -> Optional[List[str]]:
    """The arguments of the command echoed just above line ``before``, if an echo is there."""
    for index in range(before - 1, -1, -1):
        stripped = lines[index].strip()
        if not stripped or stripped == "@" or set(stripped) <= {"-"}:
            continue
        words = stripped[stripped.rfind(">") + 1 :].split()
        if words and words[0] == command:
            return words[1:]
        return None
    return None


def _check_echo(lines: Sequence[str], anchor: int, command: str, address: int, what: str) -> None:
    """A reply that prints its own address must match the address in the echo, if any."""
    args = _echoed_args(lines, anchor, command)
    if args and _is_plain_int(args[0]) and int(args[0]) != address:
        raise ParseError("%s: reply is for unit %d but the echo asked for %s" % (what, address, args[0]))
