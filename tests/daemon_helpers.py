"""Running the real daemon in a subprocess for end-to-end tests."""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = os.path.join(ROOT, "extra200tomqtt.py")


def write_config(directory: str, broker_port: int, topic_base: str, **sections: Dict[str, Any]) -> str:
    """A config file for a test run: the given broker, fast polling, state in ``directory``."""
    config: Dict[str, Any] = {
        "mqtt": {"broker": "127.0.0.1", "port": broker_port, "topic_base": topic_base, "keepalive": 5},
        "serial": {"reading_freq": 1, "command_timeout": 3, "stale_after": 6},
        "logging": {"level": "INFO"},
        "state_dir": os.path.join(directory, "state"),
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(name), dict):
            config[name].update(values)
        else:
            config[name] = values
    path = os.path.join(directory, "config.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


class DaemonProcess:
    """``extra200tomqtt.py`` in a subprocess; its standard error is collected line by line."""

    def __init__(self, config: str, port: str, *extra: str, env: Optional[Dict[str, str]] = None) -> None:
        self.args = [sys.executable, ENTRY, "--config", config, "--port", port, *extra]
        self.env = dict(os.environ, **(env or {}))
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "DaemonProcess":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def count(self, fragment: str) -> int:
        with self._lock:
            return sum(1 for line in self.lines if fragment in line)

    def wait_log(self, fragment: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(fragment):
                return True
            time.sleep(0.1)
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (killing it if it does not stop in ``timeout``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop within %.0f s after SIGTERM:\n%s" % (timeout, self.log())) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
