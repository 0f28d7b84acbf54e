"""``info`` and ``stat``: the two per-unit blocks that start with ``Device address``.

``info``: identity (manufacturer, model, versions, barcode) and ratings (rated voltage
and capacity, cell count, maximum currents, console baud), which must agree with each
other.  ``stat``: every counter as printed, cycles, SOH and charge times typed and
checked against their right-aligned neighbours.
"""

from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from ..model import DeviceInfo, Statistics
from .blocks import _convert_entry, _entries, _Entry
from .common import BAUD_RATES, DEVICE_NAMES, MANUFACTURERS, MAX_AMP_HOURS, PACK_VOLTS, ParseError, _Bad
from .reply import _check_echo, _find_one, _reply_lines
from .values import _amps, _count, _garbled, _in_range, _index, _int, _single_word, _text_value


def _is_device_address(words: List[str]) -> bool:
    return words[:2] == ["Device", "address"]


def _address_of(line: str, what: str, lineno: int, colon: bool) -> int:
    """``Device address      : 1`` (info, ``colon``) or ``Device address           1`` (stat)."""
    key, found, value = line.partition(":")
    words = key.split()
    if colon:
        valid = bool(found) and words == ["Device", "address"]
    else:
        valid, value = not found and len(words) == 3, " ".join(words[2:])
    try:
        if not valid:
            raise _Bad("%r is not a Device address line" % line.strip())
        return _single_word(_index)(value)  # type: ignore[return-value]
    except _Bad as exc:
        raise ParseError("%s line %d: %s" % (what, lineno, exc)) from None


def _device_block(text: str, command: str, colon: bool) -> Tuple[int, List[_Entry]]:
    """``info`` or ``stat``: the address on the ``Device address`` line (which must match the
    echo's) and the entries after it."""
    lines = _reply_lines(text, command)
    anchor = _find_one(lines, _is_device_address, command, "'Device address' line")
    address = _address_of(lines[anchor], command, anchor + 1, colon)
    _check_echo(lines, anchor, command, address, command)
    return address, _entries(lines, anchor + 1, command)


# ---------------------------------------------------------------------------
# info: identity and ratings


def _specification(value: str) -> Tuple[float, float]:
    """``48V/50AH``, ``51.2V/100AH`` -> (48.0, 50.0): rated volts and ampere-hours."""
    volts, slash, amp_hours = value.strip().partition("/")
    if not slash or volts[-1:].upper() != "V" or amp_hours[-2:].upper() != "AH":
        raise _Bad("%r is not like 48V/50AH" % value)
    numbers = []
    for number in (volts[:-1], amp_hours[:-2]):
        whole, point, fraction = number.partition(".")
        if not (whole.isascii() and whole.isdigit()) or (point and not (fraction.isascii() and fraction.isdigit())):
            raise _Bad("%r is not like 48V/50AH" % value)
        numbers.append(float(number))
    _in_range(numbers[0], PACK_VOLTS, "rated voltage")
    _in_range(numbers[1], (1.0, MAX_AMP_HOURS), "rated capacity")
    return numbers[0], numbers[1]


def _rated_amps(value: str) -> float:
    """``-90000mA`` (unit glued) or ``90000 mA`` -> 90.0 A, always positive."""
    number = "".join(value.split())
    if not number.endswith("mA"):
        raise _Bad("%r is not a current in mA" % value)
    return abs(_amps(number[:-2]))


def _cell_count(token: str) -> int:
    count = _int(token)
    if not 1 <= count <= 999:
        raise _Bad("%d cells is impossible" % count)
    return count


def _baud(value: str) -> int:
    rate = _single_word(_int)(value)
    if rate not in BAUD_RATES:
        raise _Bad("%r is not a baud rate" % value)
    return rate  # type: ignore[return-value]


def _known_word(known: FrozenSet[str], changes: bool) -> Callable[[str], Optional[str]]:
    def read(value: str) -> Optional[str]:
        text = _text_value(value)
        if text is not None and _garbled(text, known, changes):
            raise _Bad("%r is garbled" % text)
        return text

    return read


_INFO_TEXT_KEYS: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "Manufacturer": ("manufacturer", _known_word(MANUFACTURERS, changes=True)),
    "Device name": ("device_name", _known_word(DEVICE_NAMES, changes=False)),
    "Board version": ("board_version", _text_value),
    "Main Soft version": ("main_soft_version", _text_value),
    "Soft version": ("soft_version", _text_value),
    "Barcode": ("barcode", _text_value),
}


def _check_ratings(info: Dict[str, object], rated_volts: Optional[float], what: str) -> None:
    """Rated voltage, cell count, capacity and currents must agree (a lost digit breaks them)."""
    cells = info.get("cell_count")
    if rated_volts is not None and isinstance(cells, int) and not 2.0 <= rated_volts / cells <= 4.3:
        raise ParseError("%s: %g V rated with %d cells is impossible" % (what, rated_volts, cells))
    charge, discharge = info.get("max_charge_current"), info.get("max_discharge_current")
    currents = [amps for amps in (charge, discharge) if isinstance(amps, float) and amps > 0.0]
    if len(currents) == 2 and max(currents) > 3.0 * min(currents):
        raise ParseError("%s: max charge %g A and max discharge %g A do not fit together" % (what, charge, discharge))
    capacity = info.get("nominal_capacity")
    if isinstance(capacity, float):
        for amps in currents:
            if not 0.1 <= amps / capacity <= 5.0:
                raise ParseError("%s: %g A is not a plausible rating for %g Ah" % (what, amps, capacity))


def parse_info(text: str) -> DeviceInfo:
    """``info`` / ``info N``: identity and ratings of one unit; other keys in ``extra``."""
    what = "info"
    address, entries = _device_block(text, what, colon=True)

    fields: Dict[str, object] = {"address": address}
    extra: Dict[str, str] = {}
    rated_volts: Optional[float] = None
    for entry in entries:
        key = entry.key
        if key in _INFO_TEXT_KEYS:
            field, convert = _INFO_TEXT_KEYS[key]
            fields[field] = _convert_entry(entry, convert, what)
        elif key == "Specification":
            rated_volts, capacity = _convert_entry(entry, _specification, what)  # type: ignore[misc]
            fields["specification"] = entry.printed
            fields["nominal_capacity"] = capacity
        elif key == "Cell Number":
            fields["cell_count"] = _convert_entry(entry, _single_word(_cell_count), what)
        elif key == "Max Dischg Curr":
            fields["max_discharge_current"] = _convert_entry(entry, _rated_amps, what)
        elif key == "Max Charge Curr":
            fields["max_charge_current"] = _convert_entry(entry, _rated_amps, what)
        elif key == "Console Port rate":
            fields["console_baud"] = _convert_entry(entry, _baud, what)
        else:
            if key == "EPONPort rate":  # not a record field, but a known one: check it
                _convert_entry(entry, _baud, what)
            extra[key] = entry.printed
    _check_ratings(fields, rated_volts, what)
    return DeviceInfo(extra=extra, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# stat: counters


def _soh(token: str) -> float:
    return _in_range(float(_count(token)), (0.0, 100.0), "SOH")


_STAT_KEYS: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "CYCLE Times": ("cycle_count", _count),
    "SOH": ("soh", _soh),
    "SOH Percent": ("soh", _soh),  # Force
    "Charge Times": ("charge_times", _count),
}


def _check_right_aligned(entries: Sequence[_Entry], position: int, what: str) -> None:
    """Counters are right-aligned: a value that ends off both neighbours lost a character."""
    end = len(entries[position].line.rstrip())
    neighbours = [entries[i] for i in (position - 1, position + 1) if 0 <= i < len(entries)]
    if neighbours and all(len(other.line.rstrip()) != end for other in neighbours):
        entry = entries[position]
        raise ParseError(
            "%s line %d: %s is not aligned with its neighbours (dropped character?)" % (what, entry.lineno, entry.key)
        )


def parse_stats(text: str) -> Statistics:
    """``stat`` / ``stat N``: every ``label : value`` in ``counters``; cycles, SOH, charge times typed."""
    what = "stat"
    address, entries = _device_block(text, what, colon=False)

    fields: Dict[str, object] = {}
    counters: Dict[str, str] = {}
    for position, entry in enumerate(entries):
        counters[entry.key] = entry.printed
        known = _STAT_KEYS.get(entry.key)
        if known is not None:
            if known[0] in fields:
                raise ParseError("%s line %d: a second %s value" % (what, entry.lineno, known[0]))
            fields[known[0]] = _convert_entry(entry, _single_word(known[1]), what)
            _check_right_aligned(entries, position, what)
    return Statistics(address=address, counters=counters, **fields)  # type: ignore[arg-type]
