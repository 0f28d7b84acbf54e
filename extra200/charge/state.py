"""The charge controller's state across restarts: ``<state_dir>/charge_state.json``.

A restart must not forget what the controller learned: the charge phase (a
bank on float would jump back to the bulk voltage), the holds and ramps (a
limit held at 0 would jump to its maximum) and the time since the last full
charge.  ``ChargeController.state()`` gives that as a document with times
relative to its last poll; this file adds the wall-clock time it was written,
so the next start knows its age (``ChargeController.restore`` resumes only a
recent state).  Written atomically like the energy counters, every
``state_save_interval`` seconds, at once when the phase changes or a stop
begins or ends (a current limit reaching or leaving 0: a crash must not lift
a stop), and at shutdown.
"""

import logging
import os
import time
from typing import Optional, Tuple

from ..files import read_json, write_json_atomic
from ..reporting import Episodes
from .controller import ChargeController

# The name the log lines carried before charge control became a package: the log format prints it.
logger = logging.getLogger("extra200.charge_state")

CHARGE_STATE_FILE = "charge_state.json"


class ChargeStateFile:
    """Load the controller's state once at start, save it now and then; failures are logged once."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, CHARGE_STATE_FILE)
        self._saved_at: Optional[float] = None
        self._saved_phase: Optional[str] = None
        self._saved_stops: Optional[Tuple[bool, bool]] = None
        self._failing = Episodes(logger)  # "save", until a save works

    def load(self, controller: ChargeController, now: Optional[float] = None) -> bool:
        """Hand the saved state to ``controller``; True when it resumes (False: none, old or unreadable)."""
        data = read_json(self.path)
        if data is None:
            return False
        saved = data.get("saved_at") if isinstance(data, dict) else None
        if not isinstance(saved, (int, float)) or not isinstance(data.get("controller"), dict):
            logger.warning("charge state: %s has an unknown format; starting afresh", self.path)
            return False
        wall = time.time() if now is None else now
        return controller.restore(data["controller"], wall - saved)

    def save(self, controller: ChargeController, now: Optional[float] = None) -> bool:
        if not controller.polled:
            return True  # nothing learned yet: keep a saved state that was not resumed
        wall = time.time() if now is None else now
        try:
            write_json_atomic(self.path, {"saved_at": wall, "controller": controller.state()})
        except OSError as exc:
            self._failing.fault("save", logging.WARNING, "charge state: cannot write %s (%s); retrying", self.path, exc)
            return False
        self._failing.recovered("save", "charge state: %s written again", self.path)
        self._saved_at = wall
        self._saved_phase = controller.phase
        self._saved_stops = controller.stops
        return True

    def save_if_due(self, controller: ChargeController, now: float, interval: float) -> bool:
        """Save when ``interval`` seconds have passed, or the charge phase or a stop changed, since the last save."""
        if (
            self._saved_at is not None
            and 0 <= now - self._saved_at < interval
            and controller.phase == self._saved_phase
            and controller.stops == self._saved_stops
        ):
            return True
        return self.save(controller, now)
