"""Real servers for the tests: a Mosquitto broker (and, in database tests, MariaDB) on loopback.

Each server is started on a free port in a temporary directory and stopped
at the end.  Nothing here is a mock: the daemon talks to the same programs
a user runs.  When a program is not installed the tests that need it fail
with a message saying what to install (CI installs everything).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import List, Optional


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d after %.0f s" % (host, port, timeout))


def find_program(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next(
        (os.path.join(d, name) for d in extra_dirs if os.path.exists(os.path.join(d, name))), None
    )
    if path is None:
        raise RuntimeError("%s is not installed (run: bash .ci/setup)" % name)
    return path


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1:<free port>; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self, password_file: Optional[str] = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mosquitto-")
        self.password_file = password_file
        self.process: Optional[subprocess.Popen] = None
        self.binary = find_program("mosquitto", "/usr/sbin")

    def _write_config(self) -> str:
        path = os.path.join(self.dir, "mosquitto.conf")
        lines: List[str] = [
            "listener %d 127.0.0.1" % self.port,
            "persistence false",
            # As root Mosquitto would switch to its own user, which cannot read our temporary files.
            *(["user root"] if os.geteuid() == 0 else []),
            "log_dest file %s" % os.path.join(self.dir, "mosquitto.log"),
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.password_file:
            lines += ["allow_anonymous false", "password_file %s" % self.password_file]
        else:
            lines.append("allow_anonymous true")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def start(self) -> "Mosquitto":
        config = self._write_config()
        self.process = subprocess.Popen(
            [self.binary, "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def make_password_file(directory: str, user: str, password: str) -> str:
        """A password file for ``user`` made with mosquitto_passwd."""
        path = os.path.join(directory, "passwd")
        subprocess.run(
            [find_program("mosquitto_passwd", "/usr/bin"), "-b", "-c", path, user, password],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.chmod(path, 0o600)
        return path
