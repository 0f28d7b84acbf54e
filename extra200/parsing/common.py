"""What every parser of the package shares: ParseError, the limits of physically possible
values and the words the console is known to print (state, protection, manufacturer and
model names); ``_Bad``, a value that does not fit, before the caller says where it was."""


class ParseError(ValueError):
    """A reply that cannot be read completely and plausibly; the message says where and why."""


# ---------------------------------------------------------------------------
# Limits: values outside them are physically impossible, hence corrupted.

CELL_VOLTS = (1.0, 5.0)
PACK_VOLTS = (5.0, 1000.0)
CELSIUS = (-50.0, 150.0)
PERCENT = (0.0, 110.0)
MAX_AMPS = 1000.0
MAX_AMP_HOURS = 5000.0
# Pack voltage / mean cell voltage: the number of cells in series.  A lost
# digit in the pack voltage divides it by ~10, far below any real pack.
SERIES_CELLS = (3.5, 400.0)
# Cells per module in a low-voltage ``bat N`` table (Force HV: any count).
LV_CELL_COUNTS = (15, 16)
# ``pwr`` rows: 8 or 16 address slots with the old 16-column header, 16 with any
# newer one; US3000D firmware (cell-index columns, no SysAlarm.St) lists present units only.
PWR_SLOTS = (8, 16)
MAX_UNITS = 16
BAUD_RATES = frozenset((1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400))

# State words seen in captures and documentation.  Other words are accepted
# (firmware adds states) unless they are one edit away from one of these,
# which is what a dropped or garbled character makes of a known word.
# Protection and model names are checked for lost characters only (a new
# model may well differ from a known one in one letter).
STATE_WORDS = frozenset(
    (
        "Normal",
        "High",
        "Low",
        "Charge",
        "Dischg",
        "Idle",
        "Balance",
        "SysError",
        "Full",
        "Abnormal",
        "ON",
        "OFF",
    )
)

# ``Protect ENA`` names (``pwr N``); Pytes V5 prints its own lists, kept in extra.
PROTECTION_NAMES = frozenset(
    (
        "BOV",
        "BHV",
        "BLV",
        "BUV",
        "POV",
        "PHV",
        "PLV",
        "PUV",
        "CBOT",
        "CBHT",
        "CBLT",
        "CBUT",
        "DBOT",
        "DBHT",
        "DBLT",
        "DBUT",
        "POT",
        "PHT",
        "PLT",
        "PUT",
        "COC",
        "COC2",
        "COCA",
        "DOCA",
        "DOC",
        "DOC2",
        "SC",
        "LCOUL",
    )
)
# ``info`` identity words.
MANUFACTURERS = frozenset(("Pylon", "PYTES"))
DEVICE_NAMES = frozenset(
    (
        "US2000",
        "US2000B",
        "US2000C",
        "US2KBPL",
        "US3000",
        "US3000A",
        "US3000B",
        "US3000C",
        "US3000D",
        "US5000",
        "US5000B",
        "US5000C",
        "UP2500",
        "UP5000",
        "E-BOX-4850P",
        "E-BOX-48100V-D",
        "E-BOX-48100R",
        "Force_H1",
        "Force_H2",
        "Force_L1",
        "Force_L2",
        "CMU",
        "CMU_A",
        "BMU",
    )
)


class _Bad(Exception):
    """A value that does not fit; the caller adds where it was found."""
