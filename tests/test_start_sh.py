"""start.sh, the supervisor: ramdisk mount and fallback, restarts with backoff, clean stops.

start.sh must supervise any command, so these tests run it around a small
stand-in daemon written here (EXTRA200_DAEMON_CMD): it records each start
(its log file, arguments and pid) and each signal it receives in a JSON-lines
file, and exits with a chosen code.  Mounts are real (tests run as root), and
"mount refused" is a real refusal: start.sh runs as the user nobody.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_SH = os.path.join(ROOT, "start.sh")
NOBODY = 65534

STAND_IN = r'''
"""Stand-in daemon for the start.sh tests."""
import json, os, signal, sys, time

record = os.environ["FAKE_RECORD"]


def note(**event):
    event["pid"] = os.getpid()
    with open(record, "a") as handle:
        handle.write(json.dumps(event) + "\n")


def on_signal(signum, frame):
    note(event="signal", signum=signum)
    time.sleep(0.3)  # like the daemon publishing "offline"
    sys.exit(0)


if os.environ.get("FAKE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
log_file = os.environ.get("EXTRA200_LOG_FILE")
if log_file:
    with open(log_file, "a") as handle:
        handle.write("stand-in daemon %d started\n" % os.getpid())
note(event="start", log_file=log_file, args=sys.argv[1:])
time.sleep(float(os.environ.get("FAKE_LIFE", "3600")))
sys.exit(int(os.environ.get("FAKE_EXIT_CODE", "1")))
'''


def system_python() -> str:
    """A Python every user may run (the stand-in runs as nobody in one test)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


class Supervisor:
    """One start.sh process around the stand-in daemon."""

    def __init__(self, workdir: str, env: Dict[str, str], args: List[str], user: Optional[int] = None) -> None:
        self.record = os.path.join(workdir, "events.jsonl")
        self.stderr_path = os.path.join(workdir, "start.stderr")
        script = os.path.join(workdir, "stand_in.py")
        if not os.path.exists(script):
            with open(script, "w") as handle:
                handle.write(STAND_IN)
        full_env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "FAKE_RECORD": self.record,
            "EXTRA200_DAEMON_CMD": "%s %s" % (system_python(), script),
            "EXTRA200_HOME": workdir,
        }
        full_env.update(env)
        start_sh = START_SH
        if user is not None:
            # A copy the user can surely read, wherever the repository is checked out.
            start_sh = os.path.join(workdir, "start.sh")
            shutil.copy(START_SH, start_sh)
        command = ["sh", start_sh] + args
        if user is not None:
            command = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + command
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                command,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )

    def events(self, kind: Optional[str] = None) -> List[dict]:
        if not os.path.exists(self.record):
            return []
        with open(self.record) as handle:
            found = [json.loads(line) for line in handle if line.strip()]
        return [e for e in found if kind is None or e["event"] == kind]

    def stderr(self) -> str:
        with open(self.stderr_path) as handle:
            return handle.read()

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        if predicate():
            return
        raise AssertionError("timed out waiting for %s; start.sh said:\n%s" % (what, self.stderr()))

    def wait_starts(self, count: int, timeout: float = 30.0) -> List[dict]:
        self.wait_for(lambda: len(self.events("start")) >= count, timeout, "%d daemon start(s)" % count)
        return self.events("start")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


@pytest.fixture
def workdir() -> Iterator[str]:
    # Under /tmp and world-traversable: one test runs start.sh as nobody.
    path = tempfile.mkdtemp(prefix="start-sh-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervisors() -> Iterator[List[Supervisor]]:
    started: List[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.kill()


def mounts_on(path: str) -> List[List[str]]:
    with open("/proc/mounts") as handle:
        return [line.split() for line in handle if line.split()[1] == path]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mount tests need root (CI and the dev container run tests as root)")


def test_start_sh_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (apt-get install shellcheck)"
    result = subprocess.run([shellcheck, START_SH], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_ramdisk_is_a_real_tmpfs_and_config_is_untouched(workdir: str, supervisors: List[Supervisor]) -> None:
    needs_root()
    ramdisk = os.path.join(workdir, "ram")
    config = os.path.join(workdir, "config.yaml")
    with open(config, "w") as handle:
        handle.write("mqtt:\n  broker: localhost\n  password: secret\nlogging:\n  file_path: ''\n")
    os.chmod(config, 0o600)
    before = os.stat(config)
    env = {"EXTRA200_RAMDISK": ramdisk, "EXTRA200_RAMDISK_SIZE": "4M"}
    try:
        first = Supervisor(workdir, env, ["--config", config])
        supervisors.append(first)
        start = first.wait_starts(1)[0]
        assert start["log_file"] == os.path.join(ramdisk, "extra200tomqtt.log")
        assert start["args"] == ["--config", config]
        ((source, _, fstype, options, _, _),) = mounts_on(ramdisk)
        assert (source, fstype) == ("extra200tomqtt-log", "tmpfs")
        assert "size=4096k" in options.split(",")
        with open(start["log_file"]) as handle:
            assert handle.read() == "stand-in daemon %d started\n" % start["pid"]
        assert first.stop() == 0

        # A second run finds the mount and uses it: no second mount.
        second = Supervisor(workdir, env, ["--config", config])
        supervisors.append(second)
        assert second.wait_starts(2)[1]["log_file"] == os.path.join(ramdisk, "extra200tomqtt.log")
        assert len(mounts_on(ramdisk)) == 1
        assert "mounted" not in second.stderr()
        assert second.stop() == 0

        after = os.stat(config)
        assert (after.st_mtime_ns, after.st_size, stat.S_IMODE(after.st_mode)) == (
            before.st_mtime_ns,
            before.st_size,
            0o600,
        )
        with open(config) as handle:
            assert handle.read() == "mqtt:\n  broker: localhost\n  password: secret\nlogging:\n  file_path: ''\n"

        subprocess.run(["sh", START_SH, "--unmount"], env=dict(os.environ, EXTRA200_RAMDISK=ramdisk), check=True)
        assert mounts_on(ramdisk) == []
    finally:
        for _ in mounts_on(ramdisk):
            subprocess.run(["umount", "-l", ramdisk], check=False)
    assert mounts_on(ramdisk) == []


def test_mount_refused_falls_back_to_disk_and_says_so_once(workdir: str, supervisors: List[Supervisor]) -> None:
    needs_root()
    ramdisk = os.path.join(workdir, "ram")
    fallback = os.path.join(workdir, "disk-logs")
    os.chmod(workdir, 0o777)  # nobody creates both directories itself
    env = {
        "EXTRA200_RAMDISK": ramdisk,
        "EXTRA200_LOG_FALLBACK": fallback,
        "FAKE_LIFE": "0.1",
        "EXTRA200_RESTART_DELAY": "1",
    }
    try:
        supervisor = Supervisor(workdir, env, [], user=NOBODY)
        supervisors.append(supervisor)
        starts = supervisor.wait_starts(2)
        assert supervisor.stop() == 0
        assert [s["log_file"] for s in starts[:2]] == [os.path.join(fallback, "extra200tomqtt.log")] * 2
        text = supervisor.stderr()
        message = "cannot mount the log ramdisk on %s (" % ramdisk
        assert text.count(message) == 1, text
        assert "logging to disk in %s instead" % fallback in text
        assert mounts_on(ramdisk) == []
        assert os.stat(fallback).st_uid == NOBODY
    finally:
        for _ in mounts_on(ramdisk):
            subprocess.run(["umount", "-l", ramdisk], check=False)


def test_a_bind_mount_of_a_disk_directory_is_not_taken_for_the_ramdisk(workdir: str, supervisors: List[Supervisor]) -> None:
    """Under the unit's ProtectSystem=strict, systemd bind-mounts the log directory onto itself."""
    needs_root()
    os.chmod(workdir, 0o777)  # nobody writes its event record there
    logs = os.path.join(workdir, "logs")
    os.makedirs(logs)
    os.chmod(logs, 0o777)
    subprocess.run(["mount", "--bind", logs, logs], check=True)
    try:
        ((_, _, fstype, _, _, _),) = mounts_on(logs)
        if fstype in ("tmpfs", "ramfs"):
            pytest.skip("the temporary directory is itself in RAM here")
        # As in the unit: the fallback is the same directory, on disk.
        env = {"EXTRA200_RAMDISK": logs, "EXTRA200_LOG_FALLBACK": logs}
        supervisor = Supervisor(workdir, env, [], user=NOBODY)
        supervisors.append(supervisor)
        assert supervisor.wait_starts(1)[0]["log_file"] == os.path.join(logs, "extra200tomqtt.log")
        assert supervisor.stop() == 0
        assert supervisor.stderr().count("cannot mount the log ramdisk on %s (" % logs) == 1
        assert len(mounts_on(logs)) == 1
    finally:
        for _ in mounts_on(logs):
            subprocess.run(["umount", "-l", logs], check=False)


def test_empty_ramdisk_setting_means_standard_error_only(workdir: str, supervisors: List[Supervisor]) -> None:
    supervisor = Supervisor(workdir, {"EXTRA200_RAMDISK": ""}, [])
    supervisors.append(supervisor)
    assert supervisor.wait_starts(1)[0]["log_file"] is None
    assert supervisor.stop() == 0
    assert "the daemon logs to standard error only" in supervisor.stderr()


def restart_delays(text: str) -> List[int]:
    return [int(d) for d in re.findall(r"; restarting in (\d+) s", text)]


def test_restarts_with_a_growing_delay_when_the_daemon_keeps_dying(workdir: str, supervisors: List[Supervisor]) -> None:
    env = {
        "EXTRA200_RAMDISK": "",
        "FAKE_LIFE": "0.1",
        "FAKE_EXIT_CODE": "1",
        "EXTRA200_RESTART_DELAY": "1",
        "EXTRA200_RESTART_MAX_DELAY": "2",
    }
    supervisor = Supervisor(workdir, env, ["--port", "pylonsim://"])
    supervisors.append(supervisor)
    starts = supervisor.wait_starts(4)
    assert supervisor.stop() == 0
    text = supervisor.stderr()
    assert restart_delays(text)[:3] == [1, 2, 2]
    assert text.count("daemon exited with code 1 after ") >= 3
    assert "(quick exit 3 in a row)" in text
    assert all(s["args"] == ["--port", "pylonsim://"] for s in starts)
    assert len({s["pid"] for s in starts}) == len(starts)


def test_configuration_error_waits_the_longest_delay(workdir: str, supervisors: List[Supervisor]) -> None:
    env = {
        "EXTRA200_RAMDISK": "",
        "FAKE_LIFE": "0",
        "FAKE_EXIT_CODE": "2",
        "EXTRA200_RESTART_DELAY": "1",
        "EXTRA200_RESTART_MAX_DELAY": "2",
    }
    supervisor = Supervisor(workdir, env, [])
    supervisors.append(supervisor)
    supervisor.wait_starts(2, timeout=20)
    assert supervisor.stop() == 0
    text = supervisor.stderr()
    assert restart_delays(text)[0] == 2
    assert "daemon exited with code 2 after " in text
    assert "(configuration error: fix config.yaml" in text


def test_a_daemon_that_ran_long_is_restarted_after_the_base_delay(workdir: str, supervisors: List[Supervisor]) -> None:
    env = {
        "EXTRA200_RAMDISK": "",
        "FAKE_LIFE": "1.2",
        "EXTRA200_QUICK_EXIT": "1",
        "EXTRA200_RESTART_DELAY": "1",
        "EXTRA200_RESTART_MAX_DELAY": "8",
    }
    supervisor = Supervisor(workdir, env, [])
    supervisors.append(supervisor)
    supervisor.wait_starts(3)
    assert supervisor.stop() == 0
    assert restart_delays(supervisor.stderr())[:2] == [1, 1]


def test_a_killed_daemon_is_restarted(workdir: str, supervisors: List[Supervisor]) -> None:
    env = {"EXTRA200_RAMDISK": "", "EXTRA200_RESTART_DELAY": "1"}
    supervisor = Supervisor(workdir, env, [])
    supervisors.append(supervisor)
    first = supervisor.wait_starts(1)[0]
    os.kill(first["pid"], signal.SIGKILL)
    second = supervisor.wait_starts(2)[1]
    assert second["pid"] != first["pid"]
    assert supervisor.stop() == 0
    assert "daemon was killed by signal 9 after " in supervisor.stderr()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_reaches_the_daemon_and_everything_stops(workdir: str, supervisors: List[Supervisor], signum: int) -> None:
    supervisor = Supervisor(workdir, {"EXTRA200_RAMDISK": ""}, [])
    supervisors.append(supervisor)
    start = supervisor.wait_starts(1)[0]
    began = time.monotonic()
    assert supervisor.stop(signum) == 0
    assert time.monotonic() - began < 10
    # The daemon got SIGTERM (its cue to publish "offline") and is gone.
    assert [(e["pid"], e["signum"]) for e in supervisor.events("signal")] == [(start["pid"], signal.SIGTERM)]
    assert not alive(start["pid"])
    assert len(supervisor.events("start")) == 1
    assert supervisor.stderr().splitlines()[-2:] == [
        "start.sh: daemon exited with code 0 after %s s" % re.findall(r"after (\d+) s", supervisor.stderr())[-1],
        "start.sh: stopped",
    ]


def test_a_stop_during_the_restart_delay_is_prompt(workdir: str, supervisors: List[Supervisor]) -> None:
    env = {"EXTRA200_RAMDISK": "", "FAKE_LIFE": "0", "EXTRA200_RESTART_DELAY": "60"}
    supervisor = Supervisor(workdir, env, [])
    supervisors.append(supervisor)
    supervisor.wait_for(lambda: "restarting in 60 s" in supervisor.stderr(), what="the restart message")
    began = time.monotonic()
    assert supervisor.stop() == 0
    assert time.monotonic() - began < 10
    assert len(supervisor.events("start")) == 1


def test_a_daemon_ignoring_sigterm_is_killed_after_the_stop_timeout(workdir: str, supervisors: List[Supervisor]) -> None:
    env = {"EXTRA200_RAMDISK": "", "FAKE_IGNORE_TERM": "1", "EXTRA200_STOP_TIMEOUT": "2"}
    supervisor = Supervisor(workdir, env, [])
    supervisors.append(supervisor)
    start = supervisor.wait_starts(1)[0]
    assert supervisor.stop(timeout=20) == 0
    assert not alive(start["pid"])
    text = supervisor.stderr()
    assert "the daemon did not stop within 2 s: killing it" in text
    assert "daemon was killed by signal 9 after " in text


def test_bad_settings_are_refused(workdir: str) -> None:
    result = subprocess.run(
        ["sh", START_SH],
        env={"PATH": os.environ["PATH"], "EXTRA200_RAMDISK": "", "EXTRA200_RESTART_DELAY": "ten"},
        stderr=subprocess.PIPE,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert "EXTRA200_RESTART_DELAY must be a whole number of seconds, got 'ten'" in result.stderr
