"""Printed values to checked values: one token (or one ``key : value`` value) in, a number
in SI units, a state word, a flag or a text out, or ``_Bad``.  Limits and known words come
from ``common``; a known word with characters lost or changed is refused.  Also
``parse_number``, the event / alarm words (``0x2000 COULFULL``)."""

import logging
from typing import Callable, FrozenSet, Optional, Tuple

from .common import (
    CELL_VOLTS,
    CELSIUS,
    MAX_AMP_HOURS,
    MAX_AMPS,
    PACK_VOLTS,
    PERCENT,
    STATE_WORDS,
    ParseError,
    _Bad,
)

# The package's one logger keeps the name it had as one module, so log lines stay the same.
logger = logging.getLogger("extra200.parsing")

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _is_plain_int(token: str) -> bool:
    digits = token[1:] if token.startswith("-") else token
    return digits.isascii() and digits.isdigit()


def _int(token: str) -> int:
    """A plain decimal integer as the console prints it: no sign but '-', no leading zeros."""
    if not _is_plain_int(token):
        raise _Bad("%r is not a number" % token)
    digits = token.lstrip("-")
    if (len(digits) > 1 and digits[0] == "0") or token == "-0":
        raise _Bad("%r is not a plainly printed number" % token)
    return int(token)


def _in_range(value: float, limits: Tuple[float, float], what: str) -> float:
    if not limits[0] <= value <= limits[1]:
        raise _Bad("%s %g is outside %g..%g" % (what, value, limits[0], limits[1]))
    return value


def _index(token: str) -> int:
    value = _int(token)
    if value < 0:
        raise _Bad("%r is not an index" % token)
    return value


def _cell_id(token: str) -> int:
    value = _index(token)
    if value > 999:
        raise _Bad("cell index %d is impossible" % value)
    return value


def _pack_volts(token: str) -> float:
    return _in_range(_int(token) / 1000.0, PACK_VOLTS, "pack voltage")


def _cell_volts(token: str) -> float:
    return _in_range(_int(token) / 1000.0, CELL_VOLTS, "cell voltage")


def _amps(token: str) -> float:
    return _in_range(_int(token) / 1000.0, (-MAX_AMPS, MAX_AMPS), "current")


def _celsius(token: str) -> float:
    return _in_range(_int(token) / 1000.0, CELSIUS, "temperature")


def _amp_hours(token: str) -> float:
    return _in_range(_int(token) / 1000.0, (0.0, MAX_AMP_HOURS), "charge (Ah)")


def _count(token: str) -> int:
    value = _int(token)
    if value < 0:
        raise _Bad("%r is not a count" % token)
    return value


def _percent(token: str) -> float:
    if not token.endswith("%"):
        raise _Bad("%r is not a percentage" % token)
    return _in_range(float(_int(token[:-1])), PERCENT, "percentage")


def _one_edit_apart(a: str, b: str) -> bool:
    """True if ``a`` becomes ``b`` by deleting, inserting or replacing exactly one character."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(1 for x, y in zip(a, b) if x != y) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def _lost_characters(word: str, known: str) -> bool:
    """True if ``word`` is ``known`` with one or more characters lost (a proper subsequence)."""
    if len(word) >= len(known):
        return False
    rest = iter(known)
    return all(char in rest for char in word)


def _garbled(word: str, known: FrozenSet[str], changes: bool = True) -> bool:
    """True if ``word`` is not known but is a known word with characters lost, two known
    words run together (a lost space), or, if ``changes``, a known word with one
    character added or changed."""
    if word in known:
        return False
    for other in known:
        if _lost_characters(word, other) or (changes and _one_edit_apart(word, other)):
            return True
    return any(word[:i] in known and word[i:] in known for i in range(1, len(word)))


def _state(token: str) -> str:
    if token in STATE_WORDS:
        return token
    if not (token.isascii() and token.isalpha()):
        raise _Bad("%r is not a state word" % token)
    if _garbled(token, STATE_WORDS):  # also a word cut short: a prefix is a subsequence
        raise _Bad("%r is a garbled or cut state word" % token)
    logger.debug("state word %r not seen before", token)
    return token


def _flag(token: str) -> bool:
    if token not in ("Y", "N"):
        raise _Bad("%r is not Y or N" % token)
    return token == "Y"


def _text_value(value: str) -> Optional[str]:
    """A printed text value; empty is unknown (US3000D prints ``Board version :`` empty)."""
    value = " ".join(value.split())
    if not value:
        return None
    if not (value.isascii() and value.isprintable()):
        raise _Bad("%r has unprintable characters" % value)
    return value


def _optional(convert: Callable[[str], object]) -> Callable[[str], object]:
    """``-`` (unknown, e.g. MosTempr on units without a sensor) as None, else ``convert``."""

    def read(token: str) -> object:
        return None if token == "-" else convert(token)

    return read


def _is_date(text: str) -> bool:
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    digits = text[:4] + text[5:7] + text[8:]
    if not (digits.isascii() and digits.isdigit()):
        return False
    month, day = int(text[5:7]), int(text[8:])
    return 1 <= month <= 12 and 1 <= day <= 31


def _is_clock(text: str) -> bool:
    if len(text) != 8 or text[2] != ":" or text[5] != ":":
        return False
    digits = text[:2] + text[3:5] + text[6:]
    if not (digits.isascii() and digits.isdigit()):
        return False
    return int(text[:2]) <= 23 and int(text[3:5]) <= 59 and int(text[6:]) <= 59


def parse_number(token: str) -> int:
    """An event / alarm word: ``0x2000``, ``8192`` or ``0x2000 COULFULL`` (names after it ignored).

    Raises ParseError if the number is neither hexadecimal (``0x``) nor decimal,
    or if what follows it is not a symbolic name.
    """
    words = token.split()
    if not words:
        raise ParseError("event word: empty")
    head = words[0]
    if head[:2] in ("0x", "0X"):
        digits = head[2:]
        if not digits or not set(digits) <= _HEX_DIGITS:
            raise ParseError("event word: %r is not a hexadecimal number" % token)
        value = int(digits, 16)
    elif head.isascii() and head.isdigit():
        value = int(head)
    else:
        raise ParseError("event word: %r is neither hexadecimal nor decimal" % token)
    for name in words[1:]:
        if not (name.replace("_", "").isalnum() and name.isascii() and any(c.isalpha() for c in name)):
            raise ParseError("event word: %r after the number is not a name" % name)
    return value


def _single_word(convert: Callable[[str], object]) -> Callable[[str], object]:
    def read(value: str) -> object:
        words = value.split()
        if len(words) != 1:
            raise _Bad("%r is not one value" % value)
        return convert(words[0])

    return read
