"""``ChargeController``: CVL, CCL, DCL, the Allow flags, the mode and the alarms, poll after poll.

It reads the units (``units``), keeps the charge phase (``phase``), moves each published limit
towards what the rules allow (``rules``, ``limit``: holds and ramps), decides what may not rise
while data is missing or stale, and builds the alarms (``alarms``).  ``state()`` / ``restore()``
carry all of it across a restart (``state.ChargeStateFile`` keeps it on disk).  No I/O and no wall
clock, so the rules can be tested over any sequence of readings.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ..config import BatteryConfig, ChargeConfig
from ..derive import BankSummary
from ..model import Bank
from .alarms import AlarmRules
from .common import (
    ALARM,
    ALARM_NAMES,
    FLOAT,
    OK,
    PYLONTECH_15S_MAX_VOLTAGE,
    RESUME_MAX_AGE,
    SAFE_NO_DATA,
    STATE_VERSION,
    Candidate,
    ChargeLimits,
    Reason,
    UnitLimits,
    first_text,
    logger,
    lowest,
    plural,
    round_down,
    round_up,
)
from .limit import Limit
from .phase import ChargePhase
from .rules import CurrentRules, Side, pack_ceiling
from .units import CellCounts, Unit, UnitReader


@dataclass
class _Blind:
    """One direction's stretch without data: since when, whether the grace applies, the last worst cell."""

    since: Optional[float] = None
    grace: bool = False
    last_cell: Optional[float] = None  # highest (charge) / lowest (discharge) cell of the last good poll


class ChargeController:
    """CVL / CCL / DCL and alarms, poll after poll (see the package docstring for the rules)."""

    def __init__(self, charge: ChargeConfig, battery: BatteryConfig) -> None:
        self._cfg = charge
        self._bat = battery
        self._rules = CurrentRules(charge, battery)
        self._alarm_rules = AlarmRules(charge, self._rules.electronics_curve)
        self._settled = False  # a poll with complete data has been seen (or the state was resumed)
        self._cvl = Limit("CVL", "V", 2, charge.cvl_recovery_hold)
        self._ccl = Limit("CCL", "A", 1, charge.current_recovery_hold)
        self._dcl = Limit("DCL", "A", 1, charge.current_recovery_hold)
        self._phase = ChargePhase(charge, battery)
        self._cell_capped = False  # CVL is below the target because of the high-cell rule, until back at target
        self._last_now: Optional[float] = None
        self._seen: Set[int] = set()
        self._cell_counts = CellCounts(battery.cells)
        self._reader = UnitReader()
        self._blind = {side.name: _Blind() for side in self._rules.sides}
        self._alarms: Dict[str, int] = {name: OK for name in ALARM_NAMES}
        self._logged_alarms: Dict[str, int] = {name: OK for name in ALARM_NAMES}
        self._mode = ""
        self._resume: Optional[Tuple[Dict[str, Any], float]] = None  # (saved state, its age) until the next poll
        self._check_settings()

    # -- settings --------------------------------------------------------

    def _check_settings(self) -> None:
        c, n, cap = self._cfg, self._bat.cells or 15, self._bat.charge_voltage_cap
        if not c.enabled:
            logger.warning(
                "charge.enabled is false: publishing the configured maximums only, no derating, "
                "no cut-offs (CVL %.2f V, %.1f / %.1f A per battery)",
                self._fixed_voltage(n),
                self._bat.max_charge_current,
                self._bat.max_discharge_current,
            )
        if c.float_cell_voltage > c.bulk_cell_voltage:
            logger.warning(
                "charge.float_cell_voltage %.3f V is above charge.bulk_cell_voltage %.3f V: float uses the bulk value",
                c.float_cell_voltage,
                c.bulk_cell_voltage,
            )
        if c.bulk_cell_voltage > c.max_cell_voltage:
            logger.warning(
                "charge.bulk_cell_voltage %.3f V is above charge.max_cell_voltage %.3f V: bulk uses the maximum",
                c.bulk_cell_voltage,
                c.max_cell_voltage,
            )
        per_cell = min(c.bulk_cell_voltage, c.max_cell_voltage)
        if cap is not None and cap < n * per_cell:
            logger.warning(
                "battery.max_charge_voltage %.2f V is below the bulk target %.2f V (%d cells x %.3f V): CVL stays at %.2f V",
                cap,
                n * per_cell,
                n,
                per_cell,
                cap,
            )
        if self._rules.sides[0].cell_curve(c.bulk_cell_voltage) <= 0.0:
            logger.warning(
                "charge.charge_cell_voltage_curve allows no current at the bulk target %.3f V: float will never be reached",
                c.bulk_cell_voltage,
            )

    # -- the poll ----------------------------------------------------------

    def update(self, bank: Bank, summary: BankSummary, now: float, fresh: bool) -> ChargeLimits:
        """The limits for this poll.  ``fresh`` False: the poll failed or the data is stale."""
        if self._resume is not None:
            self._apply_resume(now)
        self._count_time(now)
        by_address = {u.address: u for u in summary.units}
        units = [self._reader.read(b, by_address.get(b.address), now) for b in bank.present()] if fresh else []
        present = {u.address for u in units}
        if fresh:
            self._seen |= present
        missing = sorted((set(bank.missing) | set(bank.expected) | self._seen) - present) if fresh else []

        series = self._cell_counts.update(units)
        cells_cvl, cells_low = series.cvl, series.low
        spread = self._spread(units)
        if not self._cfg.enabled:
            return self._fixed(units, summary, spread, cells_cvl, cells_low, missing)
        charge_blind = self._blindness(units, fresh, charge=True) or series.unknown
        if series.unknown is not None:
            # Not a data gap that stale_charge_grace may bridge: no charge current at all until the count is known.
            self._blind["charge"].grace = False
            self._blind["charge"].last_cell = None
        discharge_blind = self._blindness(units, fresh, charge=False)
        incomplete = charge_blind or discharge_blind or (plural(missing, "missing") if missing else None)

        if incomplete is None:
            self._phase.complete_poll(units, now, spread, cells_cvl, self._cvl.value, self._cell_capped)
        else:
            self._phase.incomplete_poll()
        mode = self._phase.current if incomplete is None else ("Safe (%s)" % incomplete if fresh and units else SAFE_NO_DATA)
        if mode != self._mode and mode.startswith("Safe"):
            logger.warning(
                "Charge control %s: no limit may rise, CVL at most float%s",
                mode,
                ", no charging" if charge_blind else "",
            )
        elif mode != self._mode and self._mode.startswith("Safe"):
            logger.info("Charge control data complete again: %s", mode)
        self._mode = mode

        if incomplete is None and not self._settled:
            # The first complete data since start: what was published so far was the rules' cautious answer
            # while the console's data was still arriving (cells, counts), not a reduction to hold or ramp from.
            self._settled = True
            for limit in (self._cvl, self._ccl, self._dcl):
                limit.forget()
        charge, charge_reason, stopped = self._current(self._rules.sides[0], units, now, fresh, charge_blind, incomplete)
        discharge, discharge_reason, _ = self._current(self._rules.sides[1], units, now, fresh, discharge_blind, incomplete)
        voltage, voltage_reason = self._voltage(units, now, cells_cvl, incomplete, stopped)
        self._update_alarms(units, summary, spread, cells_cvl, missing, fresh)
        return ChargeLimits(
            charge_voltage=voltage,
            charge_current=charge,
            discharge_current=discharge,
            allow_charge=charge > 0.0,
            allow_discharge=discharge > 0.0,
            mode=mode,
            charge_reason=charge_reason,
            discharge_reason=discharge_reason,
            voltage_reason=voltage_reason,
            alarms=dict(self._alarms),
            battery_low_voltage=round_up(cells_low * self._cfg.discharge_cutoff_cell_voltage, 2),
            units={u.address: self._unit_limits(u, units, cells_cvl) for u in units},
        )

    def _update_alarms(
        self,
        units: Sequence[Unit],
        summary: BankSummary,
        spread: Optional[float],
        cells: int,
        missing: Sequence[int],
        fresh: bool,
    ) -> None:
        if fresh:
            alarms = self._alarm_rules.bank(units, summary, spread, cells, missing)
            for name in ALARM_NAMES:
                self._log_alarm(name, alarms.levels[name], alarms.reasons.get(name, ""))
            self._alarms = alarms.levels
        else:
            self._alarms = dict(self._alarms, BmsCable=ALARM)
            self._log_alarm("BmsCable", ALARM, "no fresh data")

    def _count_time(self, now: float) -> None:
        """Advance the time since the last full charge (the phase notes when a full charge falls due)."""
        elapsed = now - self._last_now if self._last_now is not None and now > self._last_now else 0.0
        self._last_now = now
        self._phase.count_time(elapsed)

    @staticmethod
    def _blindness(units: Sequence[Unit], fresh: bool, charge: bool) -> Optional[str]:
        """Why the rules of one direction cannot be evaluated, or None."""
        if not fresh:
            return "no fresh data"
        if not units:
            return "no unit reporting"
        for u in units:
            gap = u.row_gap if charge else u.row_gap_discharge
            if gap is not None:
                return "B%d reports %s" % (u.address, gap)
        return None

    @staticmethod
    def _spread(units: Sequence[Unit]) -> Optional[float]:
        highs = [u.cell_high.value for u in units if u.cell_high is not None]
        lows = [u.cell_low.value for u in units if u.cell_low is not None]
        if not highs or not lows or len(highs) != len(units) or len(lows) != len(units):
            return None
        return round(max(highs) - min(lows), 3)

    # -- charge control off ------------------------------------------------

    def _fixed_voltage(self, cells: int) -> float:
        """CVL with charge control off: battery.max_charge_voltage (auto: the cell count's ceiling),
        under the 52.8 V ceiling of 15 cells."""
        voltage = pack_ceiling(self._bat, cells)[0]
        if cells == 15:
            voltage = min(voltage, PYLONTECH_15S_MAX_VOLTAGE)
        return round_down(voltage, 2)

    def _fixed(
        self,
        units: Sequence[Unit],
        summary: BankSummary,
        spread: Optional[float],
        cells: int,
        cells_low: int,
        missing: Sequence[int],
    ) -> ChargeLimits:
        """``charge.enabled: false``: the configured maximums x units online, nothing derived; alarms as usual."""
        online = len(units)
        self._update_alarms(units, summary, spread, cells, missing, bool(units))
        charge, discharge = self._bat.max_charge_current * online, self._bat.max_discharge_current * online
        text = "charge control off: max %.1f A x %d units"
        return ChargeLimits(
            charge_voltage=self._fixed_voltage(cells),
            charge_current=round_down(charge, 1),
            discharge_current=round_down(discharge, 1),
            allow_charge=round_down(charge, 1) > 0.0,
            allow_discharge=round_down(discharge, 1) > 0.0,
            mode="Off",
            charge_reason=text % (self._bat.max_charge_current, online),
            discharge_reason=text % (self._bat.max_discharge_current, online),
            voltage_reason="charge control off: battery.max_charge_voltage",
            alarms=dict(self._alarms),
            battery_low_voltage=round_up(cells_low * self._cfg.discharge_cutoff_cell_voltage, 2),
        )

    # -- charge voltage --------------------------------------------------

    def _voltage(
        self, units: Sequence[Unit], now: float, cells: int, incomplete: Optional[str], stopped: Optional[str]
    ) -> Tuple[float, str]:
        c = self._cfg
        top = self._phase.top(cells)
        floating = lowest(
            [
                (
                    cells * min(c.float_cell_voltage, c.bulk_cell_voltage),
                    Reason("float", "float %.3f V x %d cells" % (c.float_cell_voltage, cells)),
                ),
                top,
            ]
        )
        floor = min(cells * c.discharge_cutoff_cell_voltage, floating[0])
        target = floating if (self._phase.current == FLOAT or incomplete is not None) else top

        candidates: List[Candidate] = [target]
        packs = [u.pack_voltage for u in units if u.pack_voltage is not None]
        if stopped is not None and packs:
            # CCL 0 does not stop every charger (DVCC leaves solar chargers alone under ESS with feed-in of
            # excess DC PV): a CVL at the pack's own voltage does; never below the discharge cut-off.
            candidates.append(
                (
                    max(min(packs), floor),
                    Reason("stopped", "charging stopped (%s): at most the pack's %.2f V" % (stopped, min(packs))),
                )
            )
        near: Optional[Unit] = None
        for u in units:
            high = u.cell_high_now
            if high is None or u.pack_voltage is None:
                continue
            over = u.overshoot(c.max_cell_voltage)
            if over > 0.0:
                text = "cell %s %.3f V above %.3f V" % (high.id, high.value, c.max_cell_voltage)
                candidates.append((max(u.pack_voltage - over, floor), Reason("cell high " + high.id, text)))
            elif high.value >= c.max_cell_voltage - c.max_cell_voltage_margin:
                near = u
        value, reason = lowest(candidates)
        previous = self._cvl.value
        if (
            len(candidates) == 1
            and near is not None
            and near.cell_high_now is not None
            and previous is not None
            and previous < value
        ):
            # A cell just below its limit: hold CVL (rising now would only push it over again).
            value = previous
            reason = Reason(
                "cell near " + near.cell_high_now.id,
                "cell %s %.3f V within %.3f V of %.3f V"
                % (near.cell_high_now.id, near.cell_high_now.value, c.max_cell_voltage_margin, c.max_cell_voltage),
            )
        if reason.key.startswith("cell "):
            self._cell_capped = True
        elif previous is not None and previous >= top[0] - 1e-9:
            self._cell_capped = False
        result = self._cvl.step(value, reason, now, c.cvl_recovery_rate, incomplete, 0.1)
        if stopped is not None:
            self._cvl.hold_from(now)
        return result

    # -- currents ------------------------------------------------------

    def _current(
        self,
        side: Side,
        units: Sequence[Unit],
        now: float,
        fresh: bool,
        blind: Optional[str],
        incomplete: Optional[str],
    ) -> Tuple[float, str, Optional[str]]:
        """CCL or DCL, its reason, and why this direction must stop (None when it need not).

        Without data (``blind``) it is 0, or held for the side's grace time
        when the last good poll had its worst cell in the full-current range."""
        limit = self._ccl if side.charge else self._dcl
        state = self._blind[side.name]
        online = max(1, len(units))
        rate = self._cfg.current_recovery_rate * online
        log_step = max(1.0, 0.1 * side.per_battery * online)
        if blind is None:
            state.since = None
            cells = [e.value for e in (u.cell_high if side.charge else u.cell_low for u in units) if e is not None]
            state.last_cell = (max if side.charge else min)(cells, default=None)
            candidates, stops = self._rules.candidates(side, units)
            value, reason = lowest(candidates)
            result = limit.step(value, reason, now, rate, incomplete, log_step)
            if stops:
                limit.hold_from(now)
            return result + (first_text(stops),)
        if state.since is None:
            state.since = now
            state.grace = (
                side.grace > 0 and bool(limit.value) and state.last_cell is not None and side.cell_curve(state.last_cell) >= 1.0
            )
        if state.grace and now - state.since < side.grace:
            text = "no data: %s; held up to %.0f s (last %s cell %.3f V)" % (
                blind,
                side.grace,
                "highest" if side.charge else "lowest",
                state.last_cell or 0.0,
            )
            # What fresh data still says (units online, other units' cells, held readings, states) may lower it.
            known, stops = self._rules.candidates(side, units) if fresh else ([], [])
            value, reason = lowest([(limit.value or 0.0, Reason("grace", text))] + known)
            return limit.step(value, reason, now, 0.0, incomplete, log_step) + (first_text(stops),)
        reason = Reason("blind", "no data: %s" % blind)
        return limit.step(0.0, reason, now, rate, incomplete, log_step) + (reason.text,)

    # -- per unit ----------------------------------------------------------

    def _unit_limits(self, u: Unit, units: Sequence[Unit], cells: int) -> UnitLimits:
        """One unit's own limits: the rules on its data alone, under its share of the bank maximum."""
        found: List[Tuple[float, str]] = []
        for side in self._rules.sides:
            share = lowest(self._rules.maximum(side, units))[0] / max(1, len(units))
            gap = u.row_gap if side.charge else u.row_gap_discharge
            if gap is not None:
                found.append((0.0, "no data: B%d reports %s" % (u.address, gap)))
                continue
            value, reason = lowest(self._rules.candidates(side, [u], share)[0])
            found.append((round_down(max(value, 0.0), 1), reason.text))
        (charge, charge_reason), (discharge, discharge_reason) = found
        return UnitLimits(
            address=u.address,
            charge_current=charge,
            discharge_current=discharge,
            blocks_charge=charge <= 0.0,
            blocks_discharge=discharge <= 0.0,
            charge_reason=charge_reason,
            discharge_reason=discharge_reason,
            alarms=self._alarm_rules.unit(u, cells),
        )

    # -- restart -------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        """What a restart needs to resume (JSON-ready); times as seconds before the last poll.

        The units seen are not kept: restarting is how a unit removed for good stops counting as missing."""
        now = self._last_now

        def ago(moment: Optional[float]) -> Optional[float]:
            return None if moment is None or now is None else max(0.0, now - moment)

        return {
            "version": STATE_VERSION,
            "phase": self._phase.current,
            "soc_armed": self._phase.soc_armed,
            "balanced": self._phase.balanced,
            "balanced_for": self._phase.balanced_for,
            "absorbing_for": self._phase.absorbing_for,
            "cell_capped": self._cell_capped,
            "since_full": self._phase.since_full,
            "full_due": self._phase.full_due,
            "readings": self._reader.readings_state(),
            "protections": self._reader.protections_state(),
            # the cell counts the console told, so a restart does not wait for them again
            "cell_counts": self._cell_counts.state(),
            "limits": {
                limit.name: {"value": limit.value, "reduced_ago": ago(limit.down_at)}
                for limit in (self._cvl, self._ccl, self._dcl)
            },
        }

    def restore(self, data: Mapping[str, Any], age: float) -> bool:
        """Resume from ``state()`` saved ``age`` seconds ago (applied at the next poll).

        Only a recent state (``RESUME_MAX_AGE``) resumes phase, holds and limits; an older one
        only keeps the time since the last full charge.  Returns whether the state resumes."""
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            logger.warning("Charge control: the saved state has an unknown format; starting afresh")
            return False
        since_full = data.get("since_full")
        if isinstance(since_full, (int, float)) and since_full >= 0 and age >= 0:
            self._phase.since_full = float(since_full) + age
        if not 0.0 <= age <= RESUME_MAX_AGE:
            logger.info(
                "Charge control: the saved state is %.0f s old; starting afresh (only the time since the "
                "last full charge is kept)",
                age,
            )
            return False
        self._resume = (dict(data), age)
        return True

    def _apply_resume(self, now: float) -> None:
        data, age = self._resume or ({}, 0.0)
        self._resume = None
        self._settled = True
        self._phase.resume(data)
        self._cell_capped = bool(data.get("cell_capped", False))
        self._reader.restore(data.get("readings"), data.get("protections"))
        self._cell_counts.restore(data.get("cell_counts"))
        saved = data.get("limits") or {}
        for limit in (self._cvl, self._ccl, self._dcl):
            entry = saved.get(limit.name) if isinstance(saved, Mapping) else None
            if isinstance(entry, Mapping):
                limit.resume(entry.get("value"), entry.get("reduced_ago"), now, age)
        logger.info(
            "Charge control resumed from a state saved %.0f s ago: %s, CVL %s V, CCL %s A, DCL %s A",
            age,
            self._phase.current,
            *(limit.fmt(limit.value) for limit in (self._cvl, self._ccl, self._dcl)),
        )

    @property
    def phase(self) -> str:
        return self._phase.current

    @property
    def stops(self) -> Tuple[bool, bool]:
        """Whether CCL and DCL are 0 now (the state file is written at once when this changes)."""
        return self._ccl.published == 0.0, self._dcl.published == 0.0

    @property
    def polled(self) -> bool:
        """Whether ``update`` has run (there is a state worth saving)."""
        return self._last_now is not None

    # -- alarms ----------------------------------------------------------

    def _log_alarm(self, name: str, level: int, reason: str) -> None:
        old = self._logged_alarms[name]
        if level != old:
            (logger.warning if level > old else logger.info)(
                "Alarm %s %d -> %d%s", name, old, level, ": " + reason if reason else ""
            )
            self._logged_alarms[name] = level
