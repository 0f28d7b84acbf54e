"""Console replies to typed records: ``pwr``, ``pwr N``, ``bat N``, ``info``, ``stat``.

Pure functions, no I/O, no clock.  Each parser takes the reply as the transport
hands it over (the payload between the echo / ``@`` and the completion line /
``$$``, possibly with stray ``\\r``) and is equally happy with a whole transcript
around it (echo, ``@``, prompt, completion line, ``$$``, blank lines, any mix of
``\\r\\r\\n`` / ``\\r\\n\\r`` / ``\\n`` line ends), so the same functions read a
capture file directly.  Line ends are normalised here and the block is found by
its header line (a table header, ``Power N``, ``Device address``).

How a table is read
-------------------
* By header names, never by character positions: the header line is split into
  column names (some are two words: ``Base State``, ``Volt. State``, ``Err Code``
  ...), each row into whitespace-separated tokens, and the tokens are handed to
  the columns in order.  Each column knows the shape of its value (``Time`` is a
  date and a time, ``Coulomb`` may be ``44628 mAH`` or ``89%  42586 mAH`` ...),
  and the row must be used up exactly.  ``Absent`` rows keep the old 16-field
  layout under every header and are recognised by their token.
* Every value is checked: plain decimal numbers, the expected unit, state words,
  physically possible values (cell 1-5 V, pack 5-1000 V, -50..150 degC, SoC
  0..110 %), rows and cells numbered without gaps.
* Dropped characters (common at 115200 baud) are caught by independent checks,
  because a lost digit can leave a number in range (``96%`` -> ``6%``):

  - The console prints each row under its header, so a character lost inside a
    row (or in the header) moves every later token one place.  The parser never
    reads a value at a position; it only refuses a row whose tokens are not
    where the header puts them: exactly under their names up to the first
    column whose values are right-aligned or change width, no further left than
    the small, observed offsets after it (``_Spec``).  From there on, two
    neighbouring tokens keep the same distance in every row.  ``pwr``'s Absent
    rows, always in the old layout, show whether the header itself lost a
    character.
  - ``bat``: each cell's Ah must fit its SoC and the other cells' capacity, which
    catches a digit lost in a right-aligned value; Force WH must fit AH.
    Force ``pwr`` prints the pack voltage twice (``Bat Volt`` and the row).
  - ``pwr N``: every unit (mV, mA, ...) sits in one column, and where the
    console's padding is there, values without a unit fill fields as wide as
    their kind's; ``stat``: the counters we interpret are right-aligned with
    their neighbours; ``info``: rated voltage, cell count, capacity and currents
    must agree with each other.
  - Words: a state, protection, manufacturer or model name that is a known word
    with characters lost (or two known words run together) is refused.

  Any one lost character in a table gives ParseError or the same numbers (the
  tests delete every character of every layout).  What cannot be caught: a
  character lost in a free-text value (versions, barcodes, ``DevType``), in a
  count the console prints without padding, or one that turns a word into
  another known word (``US3000C`` -> ``US3000``); losses that cancel out (one in
  the header's padding plus one in the same column of a single-row table
  without Absent rows, i.e. Force HV or one US3000D; two in the right-hand
  values of one row); a table cut between two rows where any row count is valid
  (see ``parse_cell_table``'s ``cells``; the transport's framing guards this);
  and garbage that happens to form a number: a last digit turned into a space,
  a first digit into ``-``, a hex digit of an event word into another.

* Anything that does not fit raises :class:`ParseError`; there are no partial
  results.  Exception, for key : value blocks only: a key we do not know (new
  firmware, or a garbled key) is kept in ``extra`` / ``counters`` as printed.

The modules, in the order a reply is read
-----------------------------------------
* ``common``: :class:`ParseError`, the limits of possible values, the known words.
* ``values``: one printed value to a checked number, state word or text; ``parse_number``.
* ``reply``: the reply as lines and tokens, its framing, the battery's error replies, the echo.
* ``tables``: reading a table by its header (``pwr``, ``bat``): columns, rows, alignment.
* ``power_table``: ``pwr``, the bank's table, one row per unit.
* ``cell_table``: ``bat N``, one row per cell.
* ``blocks``: reading ``key : value`` blocks (``pwr N``, ``info``, ``stat``).
* ``power_detail``: ``pwr N``, one unit's detail.
* ``device``: ``info`` and ``stat``, the two blocks that start with ``Device address``.
"""

from .cell_table import parse_cell_table
from .common import ParseError
from .device import parse_info, parse_stats
from .power_detail import parse_power_detail
from .power_table import parse_power_table
from .reply import is_error_reply
from .values import parse_number

__all__ = [
    "ParseError",
    "is_error_reply",
    "parse_cell_table",
    "parse_info",
    "parse_number",
    "parse_power_detail",
    "parse_power_table",
    "parse_stats",
]
