"""What every part of charge control shares: the alarm names and levels, the phases, the LiFePO4
figures, the published result (``ChargeLimits``, ``UnitLimits``), a rule's value with its reason,
rounding towards safety, and the derating ``Curve``."""

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from ..config import ChargeConfig

# The name the log lines carried before charge control became a package: the log format prints it.
logger = logging.getLogger("extra200.charge_limits")

# dbus-mqtt-battery's Alarms.* keys (victron-dbus-mqtt-battery.md §3.3), all sent as 0 / 1 / 2.
ALARM_NAMES: Tuple[str, ...] = (
    "LowVoltage",
    "HighVoltage",
    "LowSoc",
    "HighChargeCurrent",
    "HighDischargeCurrent",
    "HighCurrent",
    "CellImbalance",
    "HighChargeTemperature",
    "LowChargeTemperature",
    "LowCellVoltage",
    "LowTemperature",
    "HighTemperature",
    "FuseBlown",
    "BmsCable",
    "HighCellVoltage",
    "HighInternalTemperature",
    "InternalFailure",
    "StateOfHealth",
)
OK, WARNING, ALARM = 0, 1, 2

BULK = "Bulk"
ABSORPTION = "Absorption"
FLOAT = "Float"
SAFE_NO_DATA = "Safe (no data)"

PYLONTECH_15S_MAX_VOLTAGE = 52.8  # V: Victron's own clamp for 15-cell Pylontech packs (charge-control.md §7)
PYLONTECH_16S_MAX_VOLTAGE = 56.0  # V: Victron's CVL for 16-cell Pylontech packs (Pelio-L, charge-control.md §7)
# battery.max_charge_voltage: auto -> the pack ceiling for its cell count.
AUTO_PACK_CEILINGS = {15: PYLONTECH_15S_MAX_VOLTAGE, 16: PYLONTECH_16S_MAX_VOLTAGE}
LFP_CELL_MAX = 3.65  # V: LiFePO4 absolute cell limits, used for the alarm (2) level
LFP_CELL_MIN = 2.50
CELL_TABLE_MAX_AGE = 900.0  # s: an older "bat N" table no longer counts
SPREAD_NOISE = 0.005  # V: spread jitter tolerated before the absorption timer restarts
CHARGING_CURRENT = 1.0  # A: above this the bank counts as charging (temperature alarms)
STATE_VERSION = 1  # of ``ChargeController.state()``
RESUME_MAX_AGE = 900.0  # s: an older saved state does not resume phase, holds and limits
CELL_COUNTS = (15, 16)


class Reason(NamedTuple):
    """Why a limit has its value: ``key`` names the rule and its subject (stable while the
    value moves, so a creeping value is not logged every poll), ``text`` is readable."""

    key: str
    text: str


Candidate = Tuple[float, Reason]


@dataclass(frozen=True)
class UnitLimits:
    """One unit's own share of the decision, for its per-battery topic: what the rules give for
    this unit alone (never above its share of the bank maximum), and the alarms it causes."""

    address: int
    charge_current: float  # A: this unit's own CCL
    discharge_current: float  # A: this unit's own DCL
    blocks_charge: bool  # this unit's own condition stops charging (counts in NrOfModulesBlockingCharge)
    blocks_discharge: bool
    charge_reason: str
    discharge_reason: str
    alarms: Dict[str, int] = field(default_factory=dict)  # Alarms.<Name> -> 0/1/2 caused by this unit alone


@dataclass(frozen=True)
class ChargeLimits:
    """What the outputs publish for the bank (dbus-mqtt-battery ``Info``, ``Io``, ``Alarms``)."""

    charge_voltage: float  # CVL, V (2 dp, rounded down)
    charge_current: float  # CCL, A (1 dp, rounded down), bank total
    discharge_current: float  # DCL, A, bank total
    allow_charge: bool  # == charge_current > 0
    allow_discharge: bool  # == discharge_current > 0
    mode: str  # Bulk / Absorption / Float / Safe (...)
    charge_reason: str  # the rule that sets CCL now, naming the cell or sensor
    discharge_reason: str
    voltage_reason: str
    alarms: Dict[str, int] = field(default_factory=dict)  # Alarms.<Name> -> 0 ok / 1 warning / 2 alarm
    battery_low_voltage: Optional[float] = None  # Info.BatteryLowVoltage, V
    units: Dict[int, UnitLimits] = field(default_factory=dict)  # each present unit's own limits, by address

    @property
    def diagnostic(self) -> str:
        """One readable line: mode and each limit with its reason."""
        return "%s | CVL %.2f V: %s | CCL %.1f A: %s | DCL %.1f A: %s" % (
            self.mode,
            self.charge_voltage,
            self.voltage_reason,
            self.charge_current,
            self.charge_reason,
            self.discharge_current,
            self.discharge_reason,
        )


def first_text(reasons: Sequence[Reason]) -> Optional[str]:
    return reasons[0].text if reasons else None


def soc_text(soc: Optional[float]) -> str:
    return "unknown" if soc is None else "%.1f %%" % soc


def plural(addresses: Sequence[int], what: str) -> str:
    return "%s %s %s" % ("unit" if len(addresses) == 1 else "units", ", ".join(str(a) for a in addresses), what)


def round_down(value: float, digits: int) -> float:
    """Round down (a published limit never ends up above the value the rules allow)."""
    scale = 10**digits
    return round(math.floor(value * scale + 1e-6) / scale, digits)


def round_up(value: float, digits: int) -> float:
    scale = 10**digits
    return round(math.ceil(value * scale - 1e-6) / scale, digits)


def lowest(candidates: Sequence[Candidate]) -> Candidate:
    """The smallest candidate; on a tie the first listed (the most basic rule) names the reason."""
    best = candidates[0]
    for candidate in candidates[1:]:
        if candidate[0] < best[0] - 1e-9:
            best = candidate
    return best


class Curve:
    """A derating curve: fraction 0..1 of a value, straight lines between points, flat beyond the ends."""

    def __init__(self, text: str) -> None:
        self.points = tuple((x, pct / 100.0) for x, pct in ChargeConfig.parse_curve(text))

    def __call__(self, x: float) -> float:
        points = self.points
        if x <= points[0][0]:
            return points[0][1]
        for (x0, f0), (x1, f1) in zip(points, points[1:]):
            if x <= x1:
                return f0 + (f1 - f0) * (x - x0) / (x1 - x0)
        return points[-1][1]
