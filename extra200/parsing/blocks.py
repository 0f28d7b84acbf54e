"""Reading ``key : value`` blocks (``pwr N``, ``info``, ``stat``): the lines after the
block's first line up to the framing, each an ``_Entry`` (Force ``info`` section headings
prefix their keys; a key twice, two lines run together or a block cut before its closing
rule is refused), and one entry's value converted, or ParseError saying which line."""

from typing import Callable, List, Optional, Sequence

from .common import ParseError, _Bad
from .reply import _is_frame


class _Entry:
    """One ``key : value`` line: key with single spaces, value stripped, and the raw line."""

    __slots__ = ("lineno", "key", "value", "line")

    def __init__(self, lineno: int, key: str, value: str, line: str) -> None:
        self.lineno = lineno
        self.key = key
        self.value = value
        self.line = line

    @property
    def printed(self) -> str:
        """The value with single spaces, as kept in ``extra`` / ``counters``."""
        return " ".join(self.value.split())


def _heading(stripped: str) -> Optional[str]:
    """Force ``info`` section headings (``BMU 4 Barcode``, ``Unit 1 Barcode``), else None."""
    words = stripped.split()
    return " ".join(words) if len(words) >= 2 and words[-1] == "Barcode" else None


def _entries(lines: Sequence[str], start: int, what: str, closing_rule: bool = False) -> List[_Entry]:
    """``key : value`` lines from ``start`` to the framing; a line without ':' is an error.

    ``closing_rule``: the block ends with a ``-----`` rule (``pwr N``); a block
    without it was cut short.
    """
    entries: List[_Entry] = []
    keys = set()
    section = ""
    closed = False
    for index in range(start, len(lines)):
        line = lines[index]
        stripped = line.strip()
        if not stripped:
            continue
        if _is_frame(stripped):
            break
        if set(stripped) <= {"-"}:
            closed = bool(entries)
            if closed and closing_rule:
                break
            continue
        if ":" not in stripped:
            heading = _heading(stripped)
            if heading is None:
                raise ParseError("%s line %d: not a 'key : value' line: %r" % (what, index + 1, stripped))
            section = heading + " "
            continue
        key, _, value = stripped.partition(":")
        key = section + " ".join(key.split())
        value = value.strip()
        if value.startswith(":"):  # Force "Module:   : P22..."
            value = value[1:].strip()
        if not key.strip():
            raise ParseError("%s line %d: value without a key: %r" % (what, index + 1, stripped))
        if ": " in value or " :" in value:  # a lost line end glued the next line on
            raise ParseError("%s line %d: two lines run together: %r" % (what, index + 1, stripped))
        if key in keys:
            raise ParseError("%s line %d: %r twice (replies run together?)" % (what, index + 1, key))
        keys.add(key)
        entries.append(_Entry(index + 1, key, value, line))
    if closing_rule and not closed:
        raise ParseError("%s: block ends without its closing rule (cut short?)" % what)
    return entries


def _convert_entry(entry: _Entry, convert: Callable[[str], object], what: str) -> object:
    try:
        return convert(entry.value)
    except (_Bad, ParseError) as exc:
        raise ParseError("%s line %d: %s: %s" % (what, entry.lineno, entry.key, exc)) from None
