"""The daemon and its supervisor: systemd's status line, and no orphan when start.sh is killed."""

import os
import signal
import socket
import subprocess
import sys
import time

from daemon_helpers import ENTRY


def test_status_line_reaches_systemd_notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = subprocess.Popen(
        [sys.executable, ENTRY, "--port", "pylonsim://", "--dry-run", "--state-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        message = sock.recv(4096).decode()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        sock.close()
    assert message.startswith("STATUS=polling pylonsim://")
    assert "batteries 1,2,3" in message and "last error: none" in message


def _daemon_pids(parent: int):
    children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in children]


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _run_under_killed_parent(tmp_path, supervised: bool) -> bool:
    """Start the daemon under a shell, SIGKILL the shell; True when the daemon stopped by itself."""
    env = dict(os.environ)
    env.pop("EXTRA200_SUPERVISED", None)
    if supervised:
        env["EXTRA200_SUPERVISED"] = "1"
    command = '"%s" "%s" --port pylonsim:// --dry-run --state-dir "%s" >/dev/null 2>&1 & wait' % (sys.executable, ENTRY, tmp_path)
    shell = subprocess.Popen(["sh", "-c", command], env=env)
    deadline = time.monotonic() + 10
    pids = []
    while not pids and time.monotonic() < deadline:
        pids = _daemon_pids(shell.pid)
        time.sleep(0.1)
    assert pids, "daemon did not start"
    time.sleep(1.0)  # past start-up, polling
    shell.send_signal(signal.SIGKILL)
    shell.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pids[0]):
        time.sleep(0.1)
    stopped = not _alive(pids[0])
    if not stopped:
        os.kill(pids[0], signal.SIGKILL)
    return stopped


def test_daemon_stops_when_start_sh_is_killed(tmp_path):
    assert _run_under_killed_parent(tmp_path, supervised=True)


def test_unsupervised_daemon_outlives_its_shell(tmp_path):
    """Run by hand (nohup), the daemon must not die with its shell: the parent-death signal is start.sh's only."""
    assert not _run_under_killed_parent(tmp_path, supervised=False)
