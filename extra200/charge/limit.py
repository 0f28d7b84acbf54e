"""One published limit (CVL, CCL or DCL) over time: a reduction acts at once, a rise waits a hold
time after the last reduction and then ramps, and each change is logged once with its reason."""

from typing import Optional, Tuple

from .common import Reason, logger, round_down


class Limit:
    """One published limit: reductions at once, rises after a hold and at a rate, changes logged once."""

    def __init__(self, name: str, unit: str, digits: int, hold: float) -> None:
        self.name = name
        self.unit = unit
        self.digits = digits
        self.hold = hold
        self.value: Optional[float] = None  # unrounded, so a slow ramp is not lost to rounding
        self.published: Optional[float] = None
        self._down_at: Optional[float] = None
        self._last_now: Optional[float] = None
        self._logged: Optional[Tuple[float, str]] = None  # (value, reason key) of the last log line

    def fmt(self, value: Optional[float]) -> str:
        return "-" if value is None else "%.*f" % (self.digits, value)

    @property
    def down_at(self) -> Optional[float]:
        """When the limit was last reduced."""
        return self._down_at

    def forget(self) -> None:
        """Start over: the next step sets the limit to its target (no hold, no ramp)."""
        self.value = None
        self._down_at = None

    def hold_from(self, now: float) -> None:
        """Count the hold from ``now`` (a stop still in force): the limit rises only a hold after it clears."""
        if self.value is not None:
            self._down_at = now

    def resume(self, value: object, reduced_ago: object, now: float, age: float) -> None:
        """Continue from a saved value: its hold counts on from the saved reduction, and the first
        poll after the restart earns no ramp (so it is never above the value saved)."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            return
        self.value = float(value)
        self.published = round_down(self.value, self.digits)
        self._last_now = now
        if isinstance(reduced_ago, (int, float)) and reduced_ago >= 0:
            self._down_at = now - age - reduced_ago

    def step(
        self, target: float, reason: Reason, now: float, rate: float, blocked: Optional[str], log_step: float
    ) -> Tuple[float, str]:
        """Move towards ``target``; ``blocked`` (a readable why) forbids any rise this poll."""
        target = max(target, 0.0)
        why = reason
        allowed = "%s %s %s (%s)" % (self.name, self.fmt(round_down(target, self.digits)), self.unit, reason.text)
        if self.value is None:
            new = target
        elif target < self.value - 1e-9:
            new = target
            self._down_at = now
        elif target > self.value + 1e-9:
            if blocked is not None:
                new = self.value
                why = Reason("blocked", "held, %s; rules allow %s" % (blocked, allowed))
            elif self._down_at is not None and now - self._down_at < self.hold:
                new = self.value
                why = Reason("hold", "held %.0f s after a reduction; rules allow %s" % (self.hold, allowed))
            else:
                elapsed = max(0.0, now - self._last_now) if self._last_now is not None else 0.0
                new = min(target, self.value + rate * elapsed)
                if new < target - 1e-9:
                    why = Reason("ramp", "rising at %g %s/s to %s" % (rate, self.unit, allowed))
        else:
            new = target
        self.value = new
        self._last_now = now
        published = round_down(new, self.digits)
        if published != self.published:
            self._log(published, why, log_step)
        self.published = published
        return published, why.text

    def _log(self, published: float, why: Reason, log_step: float) -> None:
        """Log a change when the rule (or its cell / sensor) changed, at 0, or after a ``log_step`` drift."""
        last_value, last_key = self._logged if self._logged is not None else (None, None)
        if (
            last_value is None
            or why.key != last_key
            or published == 0.0
            or last_value == 0.0
            or (why.key != "ramp" and abs(published - last_value) >= log_step)
        ):
            logger.info("%s %s -> %s %s: %s", self.name, self.fmt(self.published), self.fmt(published), self.unit, why.text)
            self._logged = (published, why.key)
