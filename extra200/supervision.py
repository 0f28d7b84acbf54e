"""Talking to whatever supervises the daemon: systemd's status line, and dying with start.sh.

* ``notify_status``: systemd shows the text in ``systemctl status extra200tomqtt``
  (``STATUS=`` on ``$NOTIFY_SOCKET``; a no-op without systemd).
* ``die_with_parent``: when start.sh runs the daemon (it sets
  ``EXTRA200_SUPERVISED=1``) the daemon asks the kernel for SIGTERM when its
  parent dies, so a supervisor killed with SIGKILL (``svc -k`` on Venus OS)
  leaves no orphan polling the port.  Linux only; silently skipped elsewhere.
"""

import ctypes
import ctypes.util
import logging
import os
import signal
import socket

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def notify_status(text: str) -> bool:
    """Send ``STATUS=<text>`` to systemd; False when not run by systemd or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(("STATUS=%s" % text.replace("\n", " ")).encode("utf-8", "replace"))
        return True
    except OSError as exc:
        logger.debug("systemd notify failed: %s", exc)
        return False


def die_with_parent() -> bool:
    """Ask for SIGTERM when the parent (start.sh) dies; only when ``EXTRA200_SUPERVISED`` is set."""
    if os.environ.get("EXTRA200_SUPERVISED") != "1":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # The parent may already be gone between fork and prctl: then act now.
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    return True
