"""The console baud that answered last time, kept in the state directory (``serial.baud: auto``).

The next start tries that baud first, so finding it again costs one probe
instead of a round of every baud consoles use.  The file names the port, so
a second adapter (or a new battery on another port) starts afresh.
"""

import os
from typing import Optional

from .config import CONSOLE_BAUDS
from .files import read_json, write_json_atomic

BAUD_FILE = "console-baud.json"


def remembered_baud(state_dir: str, port: str) -> Optional[int]:
    """The baud that answered on ``port`` last time, or None (none remembered, another port, a bad file)."""
    document = read_json(os.path.join(state_dir, BAUD_FILE))
    if not isinstance(document, dict) or document.get("port") != port:
        return None
    baud = document.get("baud")
    return baud if baud in CONSOLE_BAUDS else None


def remember_baud(state_dir: str, port: str, baud: int) -> None:
    """Keep ``baud`` for ``port``; raises OSError when the state directory cannot be written."""
    write_json_atomic(os.path.join(state_dir, BAUD_FILE), {"port": port, "baud": baud})
