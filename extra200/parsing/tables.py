"""Reading a console table by its header names (``pwr``, ``bat``), never by positions.

The header line becomes columns (``_Column``: a name, where it starts, its ``_Spec``
from the command's catalogue); each row's tokens are handed to the columns left to
right (``_Row``), must be used up exactly, and must start where the header puts them.
From the first loose column on, neighbouring tokens keep their distance in every row.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .common import ParseError, _Bad
from .reply import _is_frame, _tokens
from .values import _one_edit_apart


class _Row:
    """The tokens of one table row, handed out left to right."""

    __slots__ = ("tokens", "next")

    def __init__(self, line: str) -> None:
        self.tokens = _tokens(line)
        self.next = 0

    def start(self) -> int:
        if self.next >= len(self.tokens):
            raise _Bad("row ends before the last column")
        return self.tokens[self.next][0]

    def take(self) -> str:
        if self.next >= len(self.tokens):
            raise _Bad("row ends before the last column")
        token = self.tokens[self.next][1]
        self.next += 1
        return token

    def take_unit(self, unit: str) -> None:
        token = self.take()
        if token.lower() != unit.lower():
            raise _Bad("unit %r where %s belongs" % (token, unit))

    def take_optional_unit(self, unit: str) -> None:
        if self.next < len(self.tokens) and self.tokens[self.next][1].lower() == unit.lower():
            self.next += 1


Reader = Callable[[_Row], Tuple[object, ...]]

# Field name meaning "keep this column's printed tokens in ``extra`` under its header name".
_EXTRA = "extra"


class _Spec:
    """How to read one column: its record fields (None = checked, then dropped) and value shape.

    Where its first token may start (its offset from the header name): columns
    before the first ``loose`` one start exactly under their header name.  A
    loose column (right-aligned values, or values whose width moves the rest of
    the row) and every column after it may start ``low`` characters left of
    its header and ``back`` characters left of the previous column's offset;
    both are 0 except where real firmware prints that way.
    """

    __slots__ = ("fields", "read", "loose", "low", "back")

    def __init__(self, fields: Tuple[Optional[str], ...], read: Reader, loose: bool = False, low: int = 0, back: int = 0) -> None:
        self.fields = fields
        self.read = read
        self.loose = loose
        self.low = low
        self.back = back


def _single(field: Optional[str], convert: Callable[[str], object], loose: bool = False, low: int = 0, back: int = 0) -> _Spec:
    def read(row: _Row) -> Tuple[object, ...]:
        return (convert(row.take()),)

    return _Spec((field,), read, loose, low, back)


class _Column:
    __slots__ = ("name", "start", "spec")

    def __init__(self, name: str, start: int, spec: _Spec) -> None:
        self.name = name
        self.start = start
        self.spec = spec


def _header_columns(line: str, catalogue: Dict[str, _Spec], where: str) -> List[_Column]:
    tokens = _tokens(line)
    columns: List[_Column] = []
    i = 0
    while i < len(tokens):
        start, name = tokens[i]
        if i + 1 < len(tokens) and name + " " + tokens[i + 1][1] in catalogue:
            name = name + " " + tokens[i + 1][1]
            i += 1
        i += 1
        if name not in catalogue:
            raise ParseError("%s: unknown column %r in the header" % (where, name))
        if any(column.name == name for column in columns):
            raise ParseError("%s: column %r twice in the header" % (where, name))
        columns.append(_Column(name, start, catalogue[name]))
    return columns


def _check_distinct_fields(columns: Sequence[_Column], where: str) -> None:
    """Two columns filling one field, or named one letter apart, are a garbled header.

    A Force "UTlow" that lost its U reads "Tlow" (BTlow's field); a "DTemp. State"
    that lost its D reads "Temp. State" next to "CTemp. State".
    """
    for i, column in enumerate(columns):
        for other in columns[i + 1 :]:
            if abs(len(column.name) - len(other.name)) == 1 and _one_edit_apart(column.name, other.name):
                raise ParseError("%s: columns %r and %r in one header" % (where, column.name, other.name))
    seen: Dict[str, str] = {}
    for column in columns:
        for field in column.spec.fields:
            if field is None or field == _EXTRA:
                continue
            if field in seen:
                raise ParseError("%s: columns %r and %r in one header" % (where, seen[field], column.name))
            seen[field] = column.name


def _table_rows(lines: Sequence[str], header: int) -> List[Tuple[int, str]]:
    """The lines after the header up to the framing (completion line, ``$$``, prompt)."""
    rows = []
    for index in range(header + 1, len(lines)):
        stripped = lines[index].strip()
        if not stripped:
            continue
        if _is_frame(stripped):
            break
        rows.append((index, lines[index]))
    return rows


Span = Tuple[int, int]


def _read_row(line: str, columns: Sequence[_Column]) -> Tuple[Dict[str, object], Dict[str, str], List[Span]]:
    """Hand a row's tokens to the columns; return (record fields, extra columns, and the
    (start, end) of each token from the first loose column on)."""
    row = _Row(line)
    fields: Dict[str, object] = {}
    extra: Dict[str, str] = {}
    previous = 0
    loose = False
    first_loose = len(row.tokens)
    for column in columns:
        spec = column.spec
        offset = row.start() - column.start
        if spec.loose and not loose:
            loose, first_loose = True, row.next
        misplaced = (offset < spec.low or offset < previous - spec.back) if loose else offset != 0
        if misplaced:
            raise _Bad("column %s starts %d character(s) off its header (dropped character?)" % (column.name, offset))
        previous = offset
        first = row.next
        try:
            values = spec.read(row)
        except _Bad as exc:
            raise _Bad("column %s: %s" % (column.name, exc)) from None
        for field, value in zip(spec.fields, values):
            if field == _EXTRA:
                extra[column.name] = " ".join(token for _, token in row.tokens[first : row.next])
            elif field is not None:
                fields[field] = value
    if row.next != len(row.tokens):
        raise _Bad("%d value(s) more than the header has columns" % (len(row.tokens) - row.next))
    return fields, extra, [(start, start + len(token)) for start, token in row.tokens[first_loose:]]


def _check_loose_spacing(rows: Sequence[Tuple[int, List[Span]]], what: str) -> None:
    """From the first loose column on, two neighbouring tokens keep the same distance in every
    row: between their starts where the values are left-aligned, between their ends where
    they are right-aligned.  A character lost inside one of them changes that distance in its
    row.  (A table of one row cannot show it.)"""
    if len(rows) < 2:
        return
    if len({len(spans) for _, spans in rows}) != 1:
        raise ParseError("%s: rows end in different shapes (dropped character?)" % what)
    for pair in range(len(rows[0][1]) - 1):
        starts = {spans[pair + 1][0] - spans[pair][0] for _, spans in rows}
        ends = {spans[pair + 1][1] - spans[pair][1] for _, spans in rows}
        if len(starts) > 1 and len(ends) > 1:
            raise ParseError(
                "%s: the right-hand values of lines %d-%d are not spaced alike "
                "(dropped character?)" % (what, rows[0][0] + 1, rows[-1][0] + 1)
            )
