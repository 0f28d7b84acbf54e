"""The charge phase: Bulk -> Absorption -> Float -> Bulk, the periodic full charge, and the CVL
target each phase aims at (``top``: bulk or full charge, under every configured ceiling).

Bulk ends when the pack reaches the target; absorption ends in float after the cells have sat
balanced at the target for ``absorption_time`` (or after ``absorption_max_time``); float goes back
to bulk when SoC falls below ``rebulk_soc`` or the cell spread grows.  Every ``full_charge_days``
without a full report from the BMS the target is ``full_charge_cell_voltage`` until every unit
reports full.  The clocks count only time between two polls with complete data.
"""

from typing import Any, List, Mapping, Optional, Sequence

from ..config import BatteryConfig, ChargeConfig
from .common import (
    ABSORPTION,
    BULK,
    FLOAT,
    PYLONTECH_15S_MAX_VOLTAGE,
    SPREAD_NOISE,
    Candidate,
    Reason,
    logger,
    lowest,
    soc_text,
)
from .rules import pack_ceiling
from .units import Unit


class ChargePhase:
    """The phase and its clocks, advanced once per poll with complete, fresh data."""

    def __init__(self, charge: ChargeConfig, battery: BatteryConfig) -> None:
        self._cfg = charge
        self._bat = battery
        self.current = BULK  # the phase now
        # The absorption clocks count only time between two polls with complete data, so a stretch
        # without data never counts as time at target.
        self.balanced = False  # the cells were balanced at the last complete poll in absorption
        self.balanced_for = 0.0  # s balanced at target
        self.absorbing_for = 0.0  # s in absorption
        self._last_complete: Optional[float] = None  # ``now`` of the last poll with complete data
        self.since_full: Optional[float] = None  # s since the BMS last reported full (counted from the first poll)
        self.full_due = False
        self.soc_armed = True  # float -> bulk by SoC only once SoC was at or above the threshold

    def count_time(self, elapsed: float) -> None:
        """Advance the time since the last full charge by ``elapsed`` s; note when a full charge falls due."""
        if self.since_full is None:
            self.since_full = 0.0
        else:
            self.since_full += elapsed
        days = self._cfg.full_charge_days
        if days > 0 and not self.full_due and self.since_full >= days * 86400.0:
            self.full_due = True
            logger.info(
                "Full charge due: the BMS has not reported full for %.1f days (charge.full_charge_days %g); "
                "CVL target %.3f V per cell until it does",
                self.since_full / 86400.0,
                days,
                self.target_cell_voltage(),
            )

    def resume(self, data: Mapping[str, Any]) -> None:
        """The phase and its clocks from a saved ``ChargeController.state()``; anything malformed is ignored."""
        if data.get("phase") in (BULK, ABSORPTION, FLOAT):
            self.current = str(data["phase"])
        self.soc_armed = bool(data.get("soc_armed", True))
        self.balanced = bool(data.get("balanced", False))
        self.full_due = bool(data.get("full_due", False))
        for name in ("balanced_for", "absorbing_for"):
            value = data.get(name)
            if isinstance(value, (int, float)) and value >= 0:
                setattr(self, name, float(value))

    # -- the CVL target --------------------------------------------------

    def target_cell_voltage(self) -> float:
        c = self._cfg
        per_cell = max(c.bulk_cell_voltage, c.full_charge_cell_voltage) if self.full_due else c.bulk_cell_voltage
        return min(per_cell, c.max_cell_voltage)

    def top(self, cells: int) -> Candidate:
        """The bulk target (the full-charge target while one is due), under every configured ceiling."""
        c = self._cfg
        per_cell = self.target_cell_voltage()
        if self.full_due and per_cell > c.bulk_cell_voltage:
            reason = Reason(
                "full charge", "full charge %.3f V x %d cells (due every %g days)" % (per_cell, cells, c.full_charge_days)
            )
        else:
            reason = Reason("bulk", "bulk %.3f V x %d cells" % (c.bulk_cell_voltage, cells))
        ceilings: List[Candidate] = [
            pack_ceiling(self._bat, cells),
            (
                cells * c.max_cell_voltage,
                Reason("cell max", "max cell %.3f V x %d cells" % (c.max_cell_voltage, cells)),
            ),
        ]
        if cells == 15:
            ceilings.append((PYLONTECH_15S_MAX_VOLTAGE, Reason("15s max", "15-cell ceiling %.2f V" % PYLONTECH_15S_MAX_VOLTAGE)))
        return lowest([(cells * per_cell, reason)] + ceilings)

    # -- the phase ---------------------------------------------------------

    def incomplete_poll(self) -> None:
        """A poll without complete data: the clocks do not count the time until the next complete one."""
        self._last_complete = None

    def complete_poll(
        self,
        units: Sequence[Unit],
        now: float,
        spread: Optional[float],
        cells: int,
        cvl: Optional[float],
        cell_capped: bool,
    ) -> None:
        """Bulk -> Absorption -> Float -> Bulk on a poll with complete, fresh data; ``cvl`` is the CVL
        now (unrounded), ``cell_capped`` whether the high-cell rule holds it below the target."""
        self._advance(units, now, spread, cells, cvl, cell_capped)
        self._last_complete = now

    def _set(self, phase: str, why: str) -> None:
        logger.info("Charge phase %s -> %s: %s", self.current, phase, why)
        self.current = phase
        self.balanced = False
        self.balanced_for = 0.0
        self.absorbing_for = 0.0

    def _enter_float(self, why: str, soc: Optional[float]) -> None:
        c = self._cfg
        self._set(FLOAT, why)
        self.soc_armed = soc is not None and soc >= c.rebulk_soc
        if not self.soc_armed:
            # A full pack reading below the re-bulk SoC: the SoC is wrong; do not bounce back to bulk on it.
            logger.warning(
                "Full charge but SoC is %s (below charge.rebulk_soc %.0f %%): SoC looks wrong, "
                "ignored for re-bulk until it reads %.0f %% or more",
                "unknown" if soc is None else "%.1f %%" % soc,
                c.rebulk_soc,
                c.rebulk_soc,
            )

    def _advance(
        self,
        units: Sequence[Unit],
        now: float,
        spread: Optional[float],
        cells: int,
        cvl: Optional[float],
        cell_capped: bool,
    ) -> None:
        c = self._cfg
        soc = min((u.soc for u in units if u.soc is not None), default=None)
        dt = now - self._last_complete if self._last_complete is not None and now > self._last_complete else 0.0
        if self._full_charge_done(units, soc) or spread is None:
            return
        if self.current == FLOAT:
            self._floating(soc, spread)
            return
        if cvl is None:
            return
        pack = min(u.pack_voltage for u in units if u.pack_voltage is not None)
        # "At CVL" means at the target (never above the published CVL): while CVL still climbs (after
        # float, after a stop) a pack held at that lower CVL is not full.  Only while the high-cell rule
        # holds CVL below the target does that lower CVL count: the bank is then as full as its
        # highest cell allows.
        target = self.top(cells)[0]
        reference = min(target, cvl) if cell_capped else target
        if self.current == BULK and pack >= reference - cells * c.target_cell_margin:
            self._set(ABSORPTION, "pack %.2f V at CVL %.2f V" % (pack, reference))
        elif self.current == ABSORPTION:
            self._absorbing(pack, reference, cells, spread, soc, dt)

    def _full_charge_done(self, units: Sequence[Unit], soc: Optional[float]) -> bool:
        """Every unit reports full: the time since the last full charge starts again, and a full charge
        that was due is done (then the phase advances no further this poll)."""
        if not (units and all(u.full() for u in units)):
            return False
        self.since_full = 0.0
        if not self.full_due:
            return False
        self.full_due = False
        logger.info("Full charge done: every unit reports full (SoC %s)", soc_text(soc))
        if self.current != FLOAT:
            self._enter_float("full charge done, the BMS reports full", soc)
        return True

    def _floating(self, soc: Optional[float], spread: float) -> None:
        """Float -> Bulk: a full charge due, SoC below ``rebulk_soc`` (once armed) or the cells drifting apart."""
        c = self._cfg
        if self.full_due:
            self._set(BULK, "full charge due")
            return
        if soc is not None and soc >= c.rebulk_soc:
            self.soc_armed = True
        if self.soc_armed and soc is not None and soc < c.rebulk_soc:
            self._set(BULK, "SoC %.1f %% below %.0f %%" % (soc, c.rebulk_soc))
        elif spread >= c.rebulk_cell_spread:
            self._set(BULK, "cell spread %.3f V reached %.3f V" % (spread, c.rebulk_cell_spread))

    def _absorbing(self, pack: float, reference: float, cells: int, spread: float, soc: Optional[float], dt: float) -> None:
        """Absorption -> Float when balanced long enough, timed out, or (full charge due) timed out; back
        to Bulk when the pack falls away from CVL."""
        c = self._cfg
        if pack < reference - cells * c.absorption_cancel_cell_drop:
            self._set(BULK, "pack %.2f V fell %.2f V below CVL %.2f V" % (pack, reference - pack, reference))
            return
        self.absorbing_for += dt
        was_balanced = self.balanced
        if spread > c.balanced_cell_spread + SPREAD_NOISE:
            self.balanced = False
            self.balanced_for = 0.0
        elif spread <= c.balanced_cell_spread:
            self.balanced = True
        if was_balanced and self.balanced:
            self.balanced_for += dt
        timed_out = c.absorption_max_time > 0 and self.absorbing_for >= c.absorption_max_time
        if self.full_due:
            if timed_out:
                self.full_due = False
                self.since_full = 0.0
                logger.warning(
                    "Full charge: no unit-wide full report after %.0f s of absorption "
                    "(charge.absorption_max_time); trying again in %g days",
                    self.absorbing_for,
                    c.full_charge_days,
                )
                self._enter_float("%.0f s in absorption without a full report" % self.absorbing_for, soc)
        elif self.balanced and self.balanced_for >= c.absorption_time:
            self._enter_float(
                "%.0f s at CVL %.2f V with cells balanced (spread %.3f V)" % (self.balanced_for, reference, spread),
                soc,
            )
        elif timed_out:
            self._enter_float(
                "%.0f s in absorption (charge.absorption_max_time), cell spread %.3f V" % (self.absorbing_for, spread),
                soc,
            )
