"""The Venus OS service directory under real daemontools, with the real daemon.

install.sh installs for Venus OS (for real, not staged) on paths under a
temporary directory; svscan from Debian's daemontools package runs the
service directory it made, as Venus OS does with /service.  The daemon reads
the built-in simulator (pylonsim://, given on the command line through
start.sh's EXTRA200_DAEMON_CMD in start.env, as a user could) and publishes to
a real Mosquitto.  The test shows it starts and publishes, is restarted by
start.sh when killed, stops cleanly (publishing "offline") on ``svc -d``, and
that uninstall.sh takes the service away again.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, List, Optional

import pytest
import yaml
from mqtt_helpers import Recorder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "extra200tomqtt"


def program(name: str) -> str:
    path = shutil.which(name)
    assert path, "%s is not installed (apt-get install daemontools)" % name
    return path


def eventually(check: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    assert check(), "timed out waiting for %s; the service log:\n%s" % (what, log())


def svstat_pid(service: str) -> Optional[int]:
    """The pid of the service's run (start.sh) when up, else None."""
    out = subprocess.run([program("svstat"), service], stdout=subprocess.PIPE, text=True, check=False).stdout
    match = re.search(r": up \(pid (\d+)\)", out)
    return int(match.group(1)) if match else None


def children(pid: int) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def daemon_pid(start_sh: int) -> Optional[int]:
    for pid in children(start_sh):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                if b"extra200tomqtt.py" in handle.read():
                    return pid
        except OSError:
            pass
    return None


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_venus_service_under_daemontools(tmp_path, broker) -> None:
    if os.geteuid() != 0:
        pytest.skip("a real (not staged) install needs root; CI runs the tests as root")
    svscan, svc = program("svscan"), program("svc")
    program("multilog")

    base = str(tmp_path / "gx")
    prefix = base + "/data/" + NAME
    service_dir = base + "/service"
    service = service_dir + "/" + NAME
    log_dir = base + "/var/log/" + NAME
    topic = "daemontools-test-%d" % os.getpid()

    # The user's settings, there before the install (which keeps them).
    os.makedirs(prefix)
    config = {
        "mqtt": {"broker": "127.0.0.1", "port": broker.port, "topic_base": topic, "keepalive": 5},
        "serial": {"reading_freq": 1, "command_timeout": 3},
    }
    with open(prefix + "/config.yaml", "w") as handle:
        yaml.safe_dump(config, handle)
    with open(prefix + "/start.env", "w") as handle:
        handle.write(
            'EXTRA200_DAEMON_CMD="%s %s/extra200tomqtt.py --port pylonsim://"\n'
            "EXTRA200_RESTART_DELAY=1\n" % (sys.executable, prefix)
        )

    install = subprocess.run(
        ["sh", os.path.join(ROOT, "install.sh"), "--platform", "venus", "--python", sys.executable,
         "--prefix", prefix, "--service-dir", service_dir, "--rc-local", base + "/data/rc.local",
         "--udev-dir", base + "/run/udev/rules.d", "--log-dir", log_dir, "--adapter", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout
    assert os.readlink(service) == prefix + "/service"

    def service_log() -> str:
        try:
            with open(log_dir + "/current", errors="replace") as handle:
                return handle.read()
        except OSError:
            return "(no log yet)"

    recorder = Recorder(broker.port, (topic + "/#",))
    scanner = subprocess.Popen(
        [svscan, service_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # It starts and publishes the bank.
        assert recorder.wait_for(lambda t, p: t == topic + "/status" and p == b"online", 60), service_log()
        bank = recorder.wait_for(lambda t, p: t == topic + "/pylon", 60)
        assert bank is not None, service_log()
        assert isinstance(json.loads(bank[2].decode()), dict)
        supervisor = svstat_pid(service)
        assert supervisor is not None
        first = daemon_pid(supervisor)
        assert first is not None, children(supervisor)

        # Killed: start.sh restarts it, and it publishes again.
        mark = recorder.count()
        os.kill(first, signal.SIGKILL)
        eventually(lambda: daemon_pid(supervisor) not in (None, first), 30, "a new daemon", service_log)
        second = daemon_pid(supervisor)
        assert recorder.wait_for(lambda t, p: t == topic + "/status" and p == b"online", 60, after=mark), service_log()
        assert recorder.wait_for(lambda t, p: t == topic + "/pylon", 60, after=mark), service_log()
        assert svstat_pid(service) == supervisor  # start.sh itself kept running
        text = service_log()
        assert "start.sh: daemon was killed by signal 9 after " in text
        assert "starting: port pylonsim://" in text

        # svc -d: SIGTERM to start.sh, forwarded; "offline" published; all gone.
        mark = recorder.count()
        began = time.monotonic()
        subprocess.run([svc, "-d", service], check=True)
        eventually(lambda: svstat_pid(service) is None and not alive(supervisor) and not alive(second),
                   20, "the service to stop", service_log)  # fmt: skip
        assert time.monotonic() - began < 15
        assert recorder.wait_for(lambda t, p: t == topic + "/status" and p == b"offline", 10, after=mark)
        later = Recorder(broker.port, (topic + "/status",))
        try:
            retained = later.wait_for(lambda t, p: True, 10)
            assert retained is not None and retained[2:] == (b"offline", True)
        finally:
            later.close()
        assert "start.sh: stopped" in service_log()

        # uninstall.sh takes the service away and leaves the user's files.
        removed = subprocess.run(
            ["sh", prefix + "/uninstall.sh"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert removed.returncode == 0, removed.stdout
        assert not os.path.lexists(service)
        assert not os.path.exists(base + "/data/rc.local")
        left = sorted(os.listdir(prefix))
        # The daemon's data stays (--purge removes it); an empty state directory goes.
        assert [n for n in left if n != "state"] == ["config.yaml", "start.env"]
        assert "state" not in left or os.listdir(prefix + "/state")
    finally:
        recorder.close()
        for path in (prefix + "/service", prefix + "/service/log"):
            if os.path.isdir(path + "/supervise"):
                subprocess.run([svc, "-dx", path], check=False)
        scanner.terminate()
        try:
            scanner.wait(timeout=10)
        except subprocess.TimeoutExpired:
            scanner.kill()
            scanner.wait()
        try:
            os.killpg(scanner.pid, signal.SIGKILL)  # anything left of its services
        except ProcessLookupError:
            pass
