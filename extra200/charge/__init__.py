"""Charge control for Victron DVCC: CVL, CCL, DCL and alarms from what the console reports.

These Pylontech / Pytes units have no working CAN link to the GX device, so
this program is the BMS voice: dbus-mqtt-battery publishes our
``Info.MaxChargeVoltage`` (CVL), ``Info.MaxChargeCurrent`` (CCL) and
``Info.MaxDischargeCurrent`` (DCL), and DVCC makes every charger and inverter
follow them.  DVCC ignores a battery's ``Io.AllowToCharge`` /
``AllowToDischarge``: stopping charge is CCL 0, stopping discharge is DCL 0
(the flags are published too, always equal to "limit > 0").

``ChargeController.update`` runs once per poll with the bank, its summary, a
monotonic clock and whether the data is fresh.  It keeps the little state the
rules need (charge phase, timers, the three ramps) and returns a frozen
``ChargeLimits``.  No I/O and no wall clock, so the rules can be tested over
any sequence of readings.

The rules (defaults and the reasoning in the README section "Charge control"):

* CVL: bulk target per cell x cells; after the pack has sat at CVL with the
  cells balanced for ``absorption_time`` (or in absorption for
  ``absorption_max_time``) it drops to the float target; back to bulk when SoC
  falls below ``rebulk_soc`` or the cell spread grows.  Every
  ``full_charge_days`` without a full report from the BMS, the target is
  ``full_charge_cell_voltage`` until every unit reports full.  A cell above
  ``max_cell_voltage`` lowers CVL at once by its overshoot; CVL then holds and
  rises slowly.  While charging must stop, CVL is at most the pack's voltage
  (CCL 0 does not stop every charger).  Never above
  ``battery.max_charge_voltage``, cells x ``max_cell_voltage``, nor 52.8 V for
  15 cells (56.0 V for 16 with ``max_charge_voltage: auto``).  Cells are counted
  per unit as the console reports them (``CellCounts``): the fewest for CVL, and
  no charge current until every unit's count is known.
* CCL / DCL: the lowest of the configured maximum per battery x units, the
  units' own ``info`` rating x units, and derating curves by highest / lowest
  cell voltage, cell temperature, BMS/MOSFET temperature and (optionally)
  SoC; 0 at the cell cut-offs, outside the temperature windows and on a unit's
  abnormal status words and protection signals (a unit at its low cut-off in
  SysError may still recharge a little).  Whatever gives CCL 0 (a 0 A maximum
  too) is a stop: it also lowers CVL.  Each unit also gets its own limits and
  alarms (``ChargeLimits.units``) for its per-battery topic.
* Every reduction acts at once; every rise waits a hold time after the last
  reduction and then ramps.
* A reading that vanishes keeps its last value for the rules, and a unit's
  ``pwr N`` protection signals stand until a later ``pwr N`` shows them
  cleared; while a unit's cell voltages are unknown its pack voltage per cell
  still bounds them.  ``state()`` / ``restore()`` carry all this across a
  restart.
* Stale or incomplete data never raises a limit: while a unit is missing
  nothing may rise and CVL goes no higher than float; without fresh cell data
  CCL is 0 and DCL is held briefly (only if the bank was far from empty), then
  0 (a short CCL hold can be enabled the same way).
* Each change of a limit, with the rule and the cell or sensor behind it, is
  logged once (not every poll) and returned as readable text.

The modules, as the data flows: ``common`` (alarm names, phases, the published
``ChargeLimits``, rounding, ``Curve``), ``signals`` (what a BMS's Power Events,
System Fault, switches and status words mean), ``units`` (each unit as the
rules see it, vanished readings held, cell counts), ``rules`` (the current
rules, pure), ``alarms`` (the alarm rules, pure), ``phase`` (Bulk / Absorption /
Float and the full charge), ``limit`` (one limit's holds, ramps and log lines),
``controller`` (``ChargeController``: the poll), ``state`` (``ChargeStateFile``:
the controller's state in ``<state_dir>/charge_state.json``, the only module with I/O).
"""

from .common import (
    ABSORPTION,
    ALARM,
    ALARM_NAMES,
    BULK,
    CELL_TABLE_MAX_AGE,
    FLOAT,
    OK,
    SAFE_NO_DATA,
    WARNING,
    ChargeLimits,
    Curve,
    UnitLimits,
)
from .controller import ChargeController
from .signals import detail_signals_protection
from .state import CHARGE_STATE_FILE, ChargeStateFile

__all__ = [
    "ABSORPTION",
    "ALARM",
    "ALARM_NAMES",
    "BULK",
    "CELL_TABLE_MAX_AGE",
    "CHARGE_STATE_FILE",
    "FLOAT",
    "OK",
    "SAFE_NO_DATA",
    "WARNING",
    "ChargeController",
    "ChargeLimits",
    "ChargeStateFile",
    "Curve",
    "UnitLimits",
    "detail_signals_protection",
]
