"""The current rules (pure): what each rule allows for CCL or DCL from a set of units' readings, and
which rules stop a direction outright; and the pack voltage ceiling for a cell count.

``CurrentRules.candidates`` lists every rule's value with its reason; the limit is the lowest.
The rules, in the order they are listed (on a tie the first names the reason): the configured
maximum and the units' own rating; the highest (charge) / lowest (discharge) cell voltage, its
cut-off and curve, and a unit's pack voltage per cell while its cells are unknown; the cell
temperature window and curve; the BMS / MOSFET temperature curve; SoC (optional); the units' own
status words and protection signals (``bms_states_block``).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..config import BatteryConfig, ChargeConfig
from .common import AUTO_PACK_CEILINGS, LFP_CELL_MAX, Candidate, Curve, Reason, lowest, plural, round_down
from .signals import CHARGE_STOP_EVENTS, DISCHARGE_STOP_EVENTS, SYSTEM_COLUMNS
from .units import Unit


@dataclass(frozen=True)
class Side:
    """The settings of one direction (charge or discharge)."""

    name: str  # charge / discharge
    per_battery: float
    cutoff: float
    cell_curve: Curve
    temp_min: float
    temp_max: float
    temp_curve: Curve
    soc_curve: Curve
    fet_key: str
    grace: float  # s the limit is held without data (stale_*_grace)
    charge: bool  # True: highest cell, fullest unit; False: lowest cell, emptiest unit


def pack_ceiling(battery: BatteryConfig, cells: int) -> Candidate:
    """battery.max_charge_voltage when set, else the ceiling for the cell count (auto)."""
    cap = battery.charge_voltage_cap
    if cap is not None:
        return cap, Reason("pack max", "battery.max_charge_voltage %.2f V" % cap)
    ceiling = AUTO_PACK_CEILINGS.get(cells, cells * LFP_CELL_MAX)
    return ceiling, Reason("pack max", "%d-cell pack ceiling %.2f V" % (cells, ceiling))


class _Findings:
    """One direction's rule values as the rules find them: the candidates, and the rules that stop it."""

    def __init__(self, side: Side, candidates: List[Candidate]) -> None:
        self.side = side
        self.candidates = candidates
        self.bank_max = lowest(candidates)[0]  # the maximum every derating is a fraction of
        self.stops: List[Reason] = []

    def derate(self, fraction: float, reason: Reason) -> None:
        if fraction <= 0.0:
            self.stops.append(reason)
        else:
            self.candidates.append((fraction * self.bank_max, reason))

    def cell(self, voltage: float, key: Reason) -> None:
        """The cut-off, then the curve, for the highest (charge) / lowest cell voltage."""
        side = self.side
        if voltage >= side.cutoff if side.charge else voltage <= side.cutoff:
            where = "at/above" if side.charge else "at/below"
            self.stops.append(Reason(key.key, "%s %s cut-off %.3f V" % (key.text, where, side.cutoff)))
        self.derate(side.cell_curve(voltage), key)


class CurrentRules:
    """CCL and DCL as the rules give them for a set of units, one direction (``Side``) at a time."""

    def __init__(self, charge: ChargeConfig, battery: BatteryConfig) -> None:
        self._cfg = charge
        self.electronics_curve = Curve(charge.electronics_temperature_curve)
        self.sides = (
            Side(
                "charge",
                battery.max_charge_current,
                charge.charge_cutoff_cell_voltage,
                Curve(charge.charge_cell_voltage_curve),
                charge.charge_min_temperature,
                charge.charge_max_temperature,
                Curve(charge.charge_temperature_curve),
                Curve(charge.charge_soc_curve),
                "CMOS Status",
                charge.stale_charge_grace,
                True,
            ),
            Side(
                "discharge",
                battery.max_discharge_current,
                charge.discharge_cutoff_cell_voltage,
                Curve(charge.discharge_cell_voltage_curve),
                charge.discharge_min_temperature,
                charge.discharge_max_temperature,
                Curve(charge.discharge_temperature_curve),
                Curve(charge.discharge_soc_curve),
                "DMOS Status",
                charge.stale_discharge_grace,
                False,
            ),
        )

    def maximum(self, side: Side, units: Sequence[Unit]) -> List[Candidate]:
        """The configured maximum and the units' own rating, x the units able to take current."""
        able = [u for u in units if not u.fet_off(side.fet_key)]
        off = [u.address for u in units if u.fet_off(side.fet_key)]
        cap_text = "max %.1f A x %d units" % (side.per_battery, len(able))
        if off:
            cap_text += " (%s)" % plural(off, "%s switched off by its BMS" % side.name)
        out: List[Candidate] = [(side.per_battery * len(able), Reason("max", cap_text))]
        infos = [u.battery.info for u in able if u.battery.info is not None]
        ratings = [r for r in (i.max_charge_current if side.charge else i.max_discharge_current for i in infos) if r is not None]
        if ratings:
            out.append((min(ratings) * len(able), Reason("bms", "BMS rating %.1f A x %d units" % (min(ratings), len(able)))))
        return out

    def candidates(
        self, side: Side, units: Sequence[Unit], share: Optional[float] = None
    ) -> Tuple[List[Candidate], List[Reason]]:
        """Every rule's value for one direction, with its reason (the limit is the lowest), and the
        rules that stop this direction outright (each also a 0 among the candidates)."""
        c = self._cfg
        out = self.maximum(side, units)
        if share is not None:
            out.append((share, Reason("share", "share of the bank maximum %.1f A" % share)))
        found = _Findings(side, out)
        _cell_voltages(found, units)
        _cell_temperatures(found, units)
        self._electronics(found, units)
        if c.soc_derating:
            _soc(found, units)
        if c.bms_states_block:
            for u in units:
                self._bms_signals(found, u)
        least = lowest(found.candidates)
        if not found.stops and round_down(least[0], 1) <= 0.0:
            found.stops.append(least[1])  # no current at all (a 0 A maximum, every switch off): a stop like the others
        # A stop listed first names the reason when several rules give 0.
        return found.candidates + [(0.0, r) for r in found.stops], found.stops

    def _electronics(self, found: _Findings, units: Sequence[Unit]) -> None:
        """The BMS / MOSFET temperature curve, per unit."""
        for u in units:
            if u.electronics is not None:
                temp, label = u.electronics
                found.derate(
                    self.electronics_curve(temp),
                    Reason("%s B%d" % (label, u.address), "%s B%d %.1f °C" % (label, u.address, temp)),
                )

    def _bms_signals(self, found: _Findings, u: Unit) -> None:
        """A unit's own status words and protection signals: each stops its direction.

        One exception keeps an empty bank from a deadlock: a unit at its low cut-off (a voltage state
        Low / Under, or a cell at the discharge cut-off) whose SysError / SysAlarm would stop charging
        may still charge at ``empty_charge_percent`` of the maximum (other rules still apply)."""
        c, side = self._cfg, found.side
        empty = side.charge and (u.pack_low or (u.cell_low is not None and u.cell_low.value <= c.discharge_cutoff_cell_voltage))
        for state in u.states:
            if not state.blocks(side.charge, u.current):
                continue
            if empty and state.column in SYSTEM_COLUMNS:
                found.candidates.append(
                    (
                        c.empty_charge_percent / 100.0 * found.bank_max,
                        Reason(
                            "empty " + state.where,
                            "BMS state %s at the low cut-off: %.0f %% allowed to recharge" % (state.text, c.empty_charge_percent),
                        ),
                    )
                )
                continue
            found.stops.append(Reason("state " + state.where, "BMS state %s" % state.text))
        detail = u.battery.detail
        if detail is None:
            return
        events = detail.power_events or 0
        for bit, name in CHARGE_STOP_EVENTS if side.charge else DISCHARGE_STOP_EVENTS:
            if events & bit:
                found.stops.append(
                    Reason("event B%d 0x%X" % (u.address, bit), "B%d Power Events 0x%X: %s" % (u.address, events, name))
                )
        if side.charge and detail.system_fault:
            found.stops.append(Reason("fault B%d" % u.address, "B%d System Fault 0x%X" % (u.address, detail.system_fault)))


def _cell_voltages(found: _Findings, units: Sequence[Unit]) -> None:
    """The highest (charge) / lowest (discharge) cell, and the pack of each unit whose cells are unknown."""
    charge = found.side.charge
    cells = [u.cell_high if charge else u.cell_low for u in units]
    known = [e for e in cells if e is not None]
    if known:
        worst = (max if charge else min)(known, key=lambda e: e.value)
        found.cell(worst.value, Reason("cell " + worst.id, "cell %s %.3f V" % (worst.id, worst.value)))
    # A unit whose cells are unknown (their last values are held above) still shows its pack: a pack that
    # sags (climbs) while the cells are unknown lowers the limit as its cells would.
    for u in units:
        average = u.unseen_cell_average(charge)
        if average is not None:
            found.cell(
                average,
                Reason(
                    "average B%d" % u.address,
                    "B%d cells unknown, pack %.2f V: %.3f V per cell on average" % (u.address, u.pack_voltage or 0.0, average),
                ),
            )


def _cell_temperatures(found: _Findings, units: Sequence[Unit]) -> None:
    """Cell temperature: the window, then the curve, on both the coldest and the hottest."""
    side = found.side
    temps = [e for u in units for e in (u.temp_low, u.temp_high) if e is not None]
    middle = (side.temp_min + side.temp_max) / 2.0
    for e in sorted(temps, key=lambda e: -abs(e.value - middle)):  # the most extreme names the reason
        reason = Reason("temp " + e.id, "cell temperature %s %.1f °C" % (e.id, e.value))
        if e.value < side.temp_min or e.value > side.temp_max:
            found.stops.append(
                Reason(
                    reason.key,
                    "%s outside %s window %.0f..%.0f °C" % (reason.text, side.name, side.temp_min, side.temp_max),
                )
            )
        found.derate(side.temp_curve(e.value), reason)


def _soc(found: _Findings, units: Sequence[Unit]) -> None:
    """The SoC curve on the fullest (charge) / emptiest (discharge) unit."""
    socs = [(u.soc, u.address) for u in units if u.soc is not None]
    if socs:
        soc, address = (max if found.side.charge else min)(socs)
        found.derate(found.side.soc_curve(soc), Reason("soc B%d" % address, "SoC B%d %.0f %%" % (address, soc)))
