"""install.sh / uninstall.sh and the systemd unit.

Installs go into a staging root (DESTDIR) for both platforms, twice, then
uninstall twice, and the whole file tree is compared after each step: the
second install must change nothing (not even a time stamp) and uninstall must
leave exactly what was there before.  The source tree is a small one written
here (the installer copies whatever program it is given), plus one test that
installs the repository itself once the daemon is there.  The Venus boot path
(rc.local -> install.sh --boot) runs for real on paths under a temporary
directory.  ``udevadm`` is a stand-in on PATH that plays a plugged-in or absent
USB adapter, since the test machine has none.
"""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "extra200tomqtt"
RULE = "zz-extra200tomqtt.rules"

SHIPPED_CONFIG = "mqtt:\n  broker: localhost\n  password: ''\nserial:\n  port: /dev/ttyUSB0\nstate_dir: /var/lib/extra200tomqtt\n"

FTDI_PROPERTIES = (
    "DEVNAME=/dev/ttyUSB0\n"
    "ID_VENDOR=FTDI\n"
    "ID_MODEL=FT232R_USB_UART\n"
    "ID_SERIAL=FTDI_FT232R_USB_UART_A10K1234\n"
    "ID_SERIAL_SHORT=A10K1234\n"
    "ID_USB_INTERFACE_NUM=00\n"
    "ID_PATH=platform-ci_hdrc.1-usb-0:1.2:1.0\n"
)

Entry = Tuple


def write(path: str, text: str, mode: int = 0o644) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


@pytest.fixture
def source(tmp_path) -> str:
    """A complete source tree: the real scripts and unit, a small stand-in program."""
    src = str(tmp_path / "src")
    os.makedirs(src)
    for name in ("install.sh", "uninstall.sh", "start.sh", NAME + ".service"):
        shutil.copy(os.path.join(ROOT, name), src)
    write(os.path.join(src, "extra200tomqtt.py"), "print('stand-in program')\n")
    write(os.path.join(src, "extra200", "__init__.py"), '"""package"""\n')
    write(os.path.join(src, "extra200", "sub", "mod.py"), "VALUE = 1\n")
    write(os.path.join(src, "extra200", "__pycache__", "junk.cpython-311.pyc"), "not copied")
    write(os.path.join(src, "requirements.txt"), "pyserial\npaho-mqtt\nPyYAML\nPyMySQL\n")
    write(os.path.join(src, "config.yaml"), SHIPPED_CONFIG)
    return src


@pytest.fixture
def fake_udevadm(tmp_path):
    """Make a stand-in udevadm: ``fake_udevadm(properties)``; returns (PATH, call log)."""

    def make(properties: Optional[str]) -> Tuple[str, str]:
        bindir = str(tmp_path / "fakebin")
        log = str(tmp_path / "udevadm.log")
        info = "exit 1"
        if properties:
            info = "cat " + write(str(tmp_path / "udev-properties"), properties)
        write(
            os.path.join(bindir, "udevadm"),
            '#!/bin/sh\ncase "$1 $2" in\n  "info --query=property") %s ;;\n  *) echo "$*" >> %s ;;\nesac\n' % (info, log),
            0o755,
        )
        return bindir + os.pathsep + os.environ["PATH"], log

    return make


def run(script: str, *args: str, destdir: Optional[str] = None, path: Optional[str] = None, ok: bool = True):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir is not None:
        env["DESTDIR"] = destdir
    if path is not None:
        env["PATH"] = path
    result = subprocess.run(
        ["sh", script] + list(args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stdout
    return result


def snapshot(root: str, dir_times: bool = True) -> Dict[str, Entry]:
    """Every path under root: type, mode, content hash, times (directory times optional)."""
    found: Dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", mode, info.st_mtime_ns) if dir_times else ("dir", mode)
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                found[rel] = ("file", mode, digest, info.st_mtime_ns)
    return found


def without_time(tree: Dict[str, Entry], *paths: str) -> Dict[str, Entry]:
    """The tree with the time stamps of some files left out (files edited and restored)."""
    return {p: (e[:3] if p in paths else e) for p, e in tree.items()}


def files_and_modes(tree: Dict[str, Entry]) -> Dict[str, object]:
    return {path: (entry[0], entry[1]) for path, entry in tree.items()}


def dirs(*paths: str) -> Dict[str, object]:
    return {p: ("dir", 0o755) for p in paths}


def tree_of(files: Dict[str, int], directories: Iterable[str], links: Dict[str, str]) -> Dict[str, object]:
    expected: Dict[str, object] = {p: ("file", m) for p, m in files.items()}
    expected.update(dirs(*directories))
    expected.update({p: ("link", t) for p, t in links.items()})
    return expected


PROGRAM_FILES = {
    "extra200tomqtt.py": 0o644,
    "requirements.txt": 0o644,
    "start.sh": 0o755,
    "uninstall.sh": 0o755,
    "config.example.yaml": 0o644,
    "extra200/__init__.py": 0o644,
    "extra200/sub/mod.py": 0o644,
    ".install-manifest": 0o644,
}


def under(prefix: str, files: Dict[str, int]) -> Dict[str, int]:
    return {os.path.join(prefix, p): m for p, m in files.items()}


# --- shellcheck and systemd-analyze ---


def test_install_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (apt-get install shellcheck)"
    result = subprocess.run(
        [shellcheck, os.path.join(ROOT, "install.sh"), os.path.join(ROOT, "uninstall.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def verify_unit(tmp_path, staged_root: str, unit_path: str) -> None:
    """systemd-analyze verify on a copy of a staged tree, with the stock targets it refers to."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed (it comes with systemd)"
    root = str(tmp_path / "verify-root")
    shutil.copytree(staged_root, root, symlinks=True)
    stock = "/usr/lib/systemd/system" if os.path.isdir("/usr/lib/systemd/system") else "/lib/systemd/system"
    units = os.path.join(root, "usr/lib/systemd/system")
    os.makedirs(units, exist_ok=True)
    for name in os.listdir(stock):
        if name.endswith(".target") and os.path.isfile(os.path.join(stock, name)):
            shutil.copy(os.path.join(stock, name), units)
    result = subprocess.run(
        [analyze, "verify", "--root=" + root, unit_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(tmp_path),
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert [line for line in result.stdout.splitlines() if NAME in line] == []


def test_the_unit_as_shipped_passes_systemd_analyze_verify(tmp_path) -> None:
    staged = str(tmp_path / "shipped")
    os.makedirs(os.path.join(staged, "etc/systemd/system"))
    os.makedirs(os.path.join(staged, "opt", NAME))
    shutil.copy(os.path.join(ROOT, NAME + ".service"), os.path.join(staged, "etc/systemd/system"))
    shutil.copy(os.path.join(ROOT, "start.sh"), os.path.join(staged, "opt", NAME))
    verify_unit(tmp_path, staged, "/etc/systemd/system/%s.service" % NAME)


def unit_lines() -> List[str]:
    return read(os.path.join(ROOT, NAME + ".service")).splitlines()


def test_the_unit_runs_start_sh_unprivileged_with_a_clean_stop() -> None:
    lines = unit_lines()
    for line in (
        "User=extra200tomqtt",
        "ExecStartPre=+/opt/extra200tomqtt/start.sh --mount-only",
        "ExecStart=/opt/extra200tomqtt/start.sh --config /opt/extra200tomqtt/config.yaml --state-dir /var/lib/extra200tomqtt",
        "Environment=EXTRA200_RAMDISK=/var/log/extra200tomqtt",
        "Environment=EXTRA200_RAMDISK_SIZE=50M",
        "Environment=EXTRA200_LOG_OWNER=extra200tomqtt",
        "KillMode=mixed",
        "TimeoutStopSec=20",
        "Restart=always",
        "StandardError=journal",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "WantedBy=multi-user.target",
    ):
        assert line in lines
    # These would shut the daemon out of the serial port.
    forbidden = ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock")
    assert [line for line in lines if line.split("=")[0] in forbidden] == []


def test_a_unit_with_an_unknown_key_fails_verification(tmp_path) -> None:
    """The check above can fail: a misspelt key is reported."""
    staged = str(tmp_path / "broken")
    os.makedirs(os.path.join(staged, "opt", NAME))
    shutil.copy(os.path.join(ROOT, "start.sh"), os.path.join(staged, "opt", NAME))
    text = read(os.path.join(ROOT, NAME + ".service")).replace("TimeoutStopSec=", "TimeoutStopSecs=")
    write(os.path.join(staged, "etc/systemd/system", NAME + ".service"), text)
    with pytest.raises(AssertionError):
        verify_unit(tmp_path, staged, "/etc/systemd/system/%s.service" % NAME)


# --- systemd (Raspberry Pi OS, Debian, Ubuntu) ---

SYSTEMD_DIRS = [
    "etc",
    "etc/systemd",
    "etc/systemd/system",
    "opt",
    "opt/" + NAME,
    "opt/%s/extra200" % NAME,
    "opt/%s/extra200/sub" % NAME,
]


def systemd_tree(extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    files = under("opt/" + NAME, dict(PROGRAM_FILES, **{"config.yaml": 0o640}))
    files["etc/systemd/system/%s.service" % NAME] = 0o644
    expected = tree_of(files, SYSTEMD_DIRS, {})
    expected.update(extra or {})
    return expected


def test_systemd_install_twice_and_uninstall_twice(tmp_path, source) -> None:
    stage = str(tmp_path / "stage")
    write(os.path.join(stage, "etc/systemd/system/other.service"), "[Service]\nExecStart=/bin/true\n")
    before = snapshot(stage, dir_times=False)

    first = run(os.path.join(source, "install.sh"), "--platform", "systemd", "--no-deps", destdir=stage)
    tree = snapshot(stage)
    assert files_and_modes(tree) == systemd_tree({"etc/systemd/system/other.service": ("file", 0o644)})
    prefix = os.path.join(stage, "opt", NAME)
    assert read(os.path.join(stage, "etc/systemd/system", NAME + ".service")) == read(os.path.join(ROOT, NAME + ".service"))
    for name in ("start.sh", "uninstall.sh", "extra200tomqtt.py", "requirements.txt"):
        assert read(os.path.join(prefix, name)) == read(os.path.join(source, name))
    assert read(os.path.join(prefix, "config.yaml")) == SHIPPED_CONFIG
    assert read(os.path.join(prefix, "config.example.yaml")) == SHIPPED_CONFIG
    manifest = read(os.path.join(prefix, ".install-manifest")).splitlines()
    assert manifest[:2] == ["platform systemd", "user " + NAME]
    for line in ("unit %s.service" % NAME, "tree /opt/%s/venv" % NAME, "config /opt/%s/config.yaml created" % NAME):
        assert line in manifest
    assert "(staging, not run) useradd --system --user-group --no-create-home --home-dir /var/lib/%s" % NAME in first.stdout
    assert "(staging, not run) chown root:%s %s/config.yaml" % (NAME, prefix) in first.stdout
    assert "(staging, not run) systemctl enable %s.service" % NAME in first.stdout
    assert "(staging, not run) systemctl restart %s.service" % NAME in first.stdout
    assert "(staging, not run) systemctl daemon-reload" in first.stdout

    second = run(os.path.join(source, "install.sh"), "--platform", "systemd", "--no-deps", destdir=stage)
    assert snapshot(stage) == tree
    assert "Nothing changed" in second.stdout
    assert "not run) useradd" not in second.stdout and "not run) systemctl restart" not in second.stdout
    assert "(staging, not run) systemctl start %s.service" % NAME in second.stdout
    assert "daemon-reload" not in second.stdout

    removed = run(os.path.join(prefix, "uninstall.sh"), destdir=stage)
    assert snapshot(stage, dir_times=False) == before
    assert "(staging, not run) systemctl disable --now %s.service" % NAME in removed.stdout
    assert "(staging, not run) userdel %s" % NAME in removed.stdout
    again = run(os.path.join(source, "uninstall.sh"), destdir=stage)
    assert snapshot(stage, dir_times=False) == before
    assert "Nothing to remove" in again.stdout


def test_systemd_prefix_is_substituted_and_the_installed_unit_verifies(tmp_path, source) -> None:
    stage = str(tmp_path / "stage")
    run(os.path.join(source, "install.sh"), "--platform", "systemd", "--no-deps", "--prefix", "/srv/e200", destdir=stage)
    unit = read(os.path.join(stage, "etc/systemd/system", NAME + ".service"))
    assert "/opt/extra200tomqtt" not in unit
    assert "ExecStartPre=+/srv/e200/start.sh --mount-only\n" in unit
    assert "ExecStart=/srv/e200/start.sh --config /srv/e200/config.yaml --state-dir /var/lib/extra200tomqtt\n" in unit
    assert os.access(os.path.join(stage, "srv/e200/start.sh"), os.X_OK)
    verify_unit(tmp_path, stage, "/etc/systemd/system/%s.service" % NAME)


def test_systemd_virtual_environment(tmp_path, source) -> None:
    """A real venv (it sees the test Python's packages, so no download), kept as is on a re-run."""
    stage = str(tmp_path / "stage")
    args = ("--platform", "systemd", "--python", sys.executable)
    first = run(os.path.join(source, "install.sh"), *args, destdir=stage)
    venv_python = os.path.join(stage, "opt", NAME, "venv", "bin", "python3")
    assert "Creating the Python virtual environment /opt/%s/venv" % NAME in first.stdout
    subprocess.run([venv_python, "-c", "import serial, paho.mqtt, yaml, pymysql"], check=True)
    tree = snapshot(stage)
    second = run(os.path.join(source, "install.sh"), *args, destdir=stage)
    assert "Nothing changed" in second.stdout
    assert snapshot(stage) == tree
    run(os.path.join(stage, "opt", NAME, "uninstall.sh"), destdir=stage)
    assert snapshot(stage) == {}


def test_upgrade_keeps_the_config_lists_new_keys_and_drops_old_files(tmp_path, source) -> None:
    stage = str(tmp_path / "stage")
    prefix = os.path.join(stage, "opt", NAME)
    install = os.path.join(source, "install.sh")
    run(install, "--platform", "systemd", "--no-deps", "--python", sys.executable, destdir=stage)
    mine = "mqtt:\n  broker: 192.168.1.5\n  password: hunter2\n  pasword: typo\nserial:\n  port: /dev/ttyACM0\n"
    write(os.path.join(prefix, "config.yaml"), mine, 0o644)

    # The next version: a new key, a new module, a module gone.
    write(os.path.join(source, "config.yaml"), SHIPPED_CONFIG + "homeassistant:\n  enabled: true\n")
    write(os.path.join(source, "extra200", "new.py"), "NEW = 2\n")
    shutil.rmtree(os.path.join(source, "extra200", "sub"))
    upgrade = run(install, "--platform", "systemd", "--no-deps", "--python", sys.executable, destdir=stage)

    assert read(os.path.join(prefix, "config.yaml")) == mine
    assert stat.S_IMODE(os.stat(os.path.join(prefix, "config.yaml")).st_mode) == 0o640
    assert "Keeping your /opt/%s/config.yaml." % NAME in upgrade.stdout
    assert (
        "  The shipped config.yaml has keys yours does not (their defaults apply; see /opt/%s/config.example.yaml):\n"
        "    state_dir\n    homeassistant\n    homeassistant.enabled\n"
        "  Yours has keys the shipped one does not (check their spelling):\n    mqtt.pasword\n" % NAME
    ) in upgrade.stdout
    assert "hunter2" not in upgrade.stdout
    assert "Removed /opt/%s/extra200/sub/mod.py (no longer part of %s)" % (NAME, NAME) in upgrade.stdout
    assert read(os.path.join(prefix, "extra200", "new.py")) == "NEW = 2\n"
    assert not os.path.exists(os.path.join(prefix, "extra200", "sub"))
    manifest = read(os.path.join(prefix, ".install-manifest"))
    assert "/sub" not in manifest and "file /opt/%s/extra200/new.py\n" % NAME in manifest
    assert "systemctl restart" in upgrade.stdout

    run(os.path.join(prefix, "uninstall.sh"), destdir=stage)
    assert snapshot(stage) == {}


def test_a_config_that_was_there_before_is_kept_by_uninstall(tmp_path, source) -> None:
    stage = str(tmp_path / "stage")
    prefix = os.path.join(stage, "opt", NAME)
    write(os.path.join(prefix, "config.yaml"), SHIPPED_CONFIG, 0o644)
    write(os.path.join(prefix, "notes.txt"), "mine\n")
    run(os.path.join(source, "install.sh"), "--platform", "systemd", "--no-deps", destdir=stage)
    assert "config /opt/%s/config.yaml kept" % NAME in read(os.path.join(prefix, ".install-manifest"))
    removed = run(os.path.join(prefix, "uninstall.sh"), destdir=stage)
    assert files_and_modes(snapshot(stage)) == tree_of(
        {"opt/%s/config.yaml" % NAME: 0o640, "opt/%s/notes.txt" % NAME: 0o644}, ["opt", "opt/" + NAME], {}
    )
    assert "Kept /opt/%s/config.yaml." % NAME in removed.stdout
    # The directory was there before: not install.sh's to remove or to mention.
    assert "holds files" not in removed.stdout


def test_install_refuses_what_it_cannot_do(tmp_path, source) -> None:
    stage = str(tmp_path / "stage")
    os.remove(os.path.join(source, "requirements.txt"))
    missing = run(os.path.join(source, "install.sh"), "--platform", "systemd", destdir=stage, ok=False)
    assert missing.returncode == 1
    assert "requirements.txt is missing" in missing.stdout
    assert snapshot(stage) == {}
    bad = run(os.path.join(source, "install.sh"), "--platform", "systemd", "--prefix", "/opt/my dir", destdir=stage, ok=False)
    assert bad.returncode == 1 and "--prefix may only contain" in bad.stdout


# --- Venus OS ---

VENUS_PREFIX = "data/" + NAME
BOOT_LINE = "if [ -x /data/{0}/install.sh ]; then /data/{0}/install.sh --boot; fi # {0}".format(NAME)


def venus_tree(extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    files = dict(PROGRAM_FILES, **{"config.yaml": 0o600, "install.sh": 0o755, RULE: 0o644})
    files.update({"service/run": 0o755, "service/log/run": 0o755})
    all_files = under(VENUS_PREFIX, files)
    all_files["run/udev/rules.d/" + RULE] = 0o644
    directories = ["data", VENUS_PREFIX, "run", "run/udev", "run/udev/rules.d", "service"]
    directories += [os.path.join(VENUS_PREFIX, d) for d in ("extra200", "extra200/sub", "service", "service/log")]
    expected = tree_of(all_files, directories, {"service/" + NAME: "/data/%s/service" % NAME})
    expected[os.path.join(VENUS_PREFIX, "state")] = ("dir", 0o700)
    expected.update(extra or {})
    return expected


def test_venus_install_twice_and_uninstall_twice(tmp_path, source, fake_udevadm) -> None:
    stage = str(tmp_path / "stage")
    user_rc = "#!/bin/bash\n/data/other-driver/install.sh\necho done"  # no line end at the end
    write(os.path.join(stage, "data/rc.local"), user_rc, 0o644)
    write(os.path.join(stage, "data/other-driver/install.sh"), "#!/bin/sh\n", 0o755)
    before = snapshot(stage, dir_times=False)
    path, _ = fake_udevadm(None)  # the adapter is not plugged in
    args = ("--platform", "venus", "--no-deps", "--python", sys.executable)

    first = run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    tree = snapshot(stage)
    assert files_and_modes(tree) == venus_tree(
        {
            "data/rc.local": ("file", 0o755),
            "data/other-driver": ("dir", 0o755),
            "data/other-driver/install.sh": ("file", 0o755),
        }
    )
    prefix = os.path.join(stage, VENUS_PREFIX)
    assert read(os.path.join(stage, "data/rc.local")) == user_rc + "\n" + BOOT_LINE + "\n"
    run_script = read(os.path.join(prefix, "service/run"))
    assert run_script.startswith("#!/bin/sh\n")
    assert "\nEXTRA200_PYTHON=%s\nEXTRA200_RAMDISK=\n" % sys.executable in run_script
    assert run_script.endswith(
        "\nexec /data/{0}/start.sh --config /data/{0}/config.yaml --state-dir /data/{0}/state\n".format(NAME)
    )
    assert read(os.path.join(prefix, "service/log/run")).endswith(
        "\nmkdir -p /var/log/{0}\nexec multilog t s1000000 n5 /var/log/{0}\n".format(NAME)
    )
    rule = read(os.path.join(stage, "run/udev/rules.d", RULE))
    assert rule == read(os.path.join(prefix, RULE))
    assert rule.splitlines()[1:] == [
        "# Adapter: /dev/ttyUSB0, whatever adapter is called ttyUSB0.",
        'SUBSYSTEM=="tty", ACTION!="remove", KERNEL=="ttyUSB0", ENV{VE_SERVICE}="ignore"',
    ]
    assert "the rule names ttyUSB0, which after a reboot may be another adapter" in first.stdout
    assert "(staging, not run) udevadm trigger --action=change --subsystem-match=tty --sysname-match=ttyUSB0" in first.stdout
    assert "Made /data/rc.local executable" in first.stdout
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed"
    subprocess.run([shellcheck, os.path.join(prefix, "service/run"), os.path.join(prefix, "service/log/run")], check=True)

    second = run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    assert snapshot(stage) == tree
    assert "Nothing changed" in second.stdout and "udevadm" not in second.stdout

    removed = run(os.path.join(prefix, "uninstall.sh"), destdir=stage, path=path)
    # rc.local byte for byte and its mode; the other files untouched, time stamps included.
    assert without_time(snapshot(stage, dir_times=False), "data/rc.local") == without_time(before, "data/rc.local")
    assert "(staging, not run) svc -dx /data/{0}/service /data/{0}/service/log".format(NAME) in removed.stdout
    assert "Removed the %s line from /data/rc.local." % NAME in removed.stdout
    again = run(os.path.join(source, "uninstall.sh"), destdir=stage, path=path)
    assert "Nothing to remove" in again.stdout
    assert without_time(snapshot(stage, dir_times=False), "data/rc.local") == without_time(before, "data/rc.local")


def test_venus_rc_local_made_by_install_goes_with_uninstall(tmp_path, source, fake_udevadm) -> None:
    stage = str(tmp_path / "stage")
    path, _ = fake_udevadm(None)
    args = ("--platform", "venus", "--no-deps", "--python", sys.executable, "--adapter", "none")
    run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    rc_local = os.path.join(stage, "data/rc.local")
    assert read(rc_local) == "#!/bin/sh\n\n" + BOOT_LINE + "\n"
    assert stat.S_IMODE(os.stat(rc_local).st_mode) == 0o755
    assert not os.path.exists(os.path.join(stage, "run"))  # --adapter none: no rule
    run(os.path.join(stage, VENUS_PREFIX, "uninstall.sh"), destdir=stage)
    assert snapshot(stage) == {}

    # The user added a line of their own meanwhile: the file stays, with it.
    run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    with open(rc_local, "a") as handle:
        handle.write("/data/mine.sh\n")
    run(os.path.join(stage, VENUS_PREFIX, "uninstall.sh"), destdir=stage)
    assert read(rc_local) == "#!/bin/sh\n\n/data/mine.sh\n"


@pytest.mark.parametrize(
    "properties, match, trigger",
    ids=["serial-number", "usb-socket"],
    argvalues=[
        (
            FTDI_PROPERTIES,
            'ENV{ID_SERIAL}=="FTDI_FT232R_USB_UART_A10K1234", ENV{ID_USB_INTERFACE_NUM}=="00"',
            "--property-match=ID_SERIAL=FTDI_FT232R_USB_UART_A10K1234",
        ),
        (
            # A CH340 without a serial number: pinned to its USB socket.
            "ID_VENDOR=1a86\nID_MODEL=USB_Serial\nID_SERIAL=1a86_USB_Serial\nID_PATH=platform-3f980000.usb-usb-0:1.3:1.0\n",
            'ENV{ID_PATH}=="platform-3f980000.usb-usb-0:1.3:1.0"',
            "--property-match=ID_PATH=platform-3f980000.usb-usb-0:1.3:1.0",
        ),
    ],
)
def test_venus_udev_rule_pins_the_adapter(tmp_path, source, fake_udevadm, properties, match, trigger) -> None:
    stage = str(tmp_path / "stage")
    path, _ = fake_udevadm(properties)
    out = run(
        os.path.join(source, "install.sh"),
        "--platform",
        "venus",
        "--no-deps",
        "--python",
        sys.executable,
        destdir=stage,
        path=path,
    )
    rule = read(os.path.join(stage, "run/udev/rules.d", RULE)).splitlines()
    assert rule[2] == 'SUBSYSTEM=="tty", ACTION!="remove", %s, ENV{VE_SERVICE}="ignore"' % match
    assert "(staging, not run) udevadm trigger --action=change --subsystem-match=tty %s" % trigger in out.stdout
    assert "udev /run/udev/rules.d/%s %s\n" % (RULE, trigger) in read(os.path.join(stage, VENUS_PREFIX, ".install-manifest"))


def test_venus_without_pip_stops_before_changing_anything(tmp_path, source) -> None:
    """A GX image whose Python lacks the packages and has no pip."""
    bare = str(tmp_path / "bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    stage = str(tmp_path / "stage")
    out = run(os.path.join(source, "install.sh"), "--platform", "venus", "--python", bare + "/bin/python3",
              destdir=stage, ok=False)  # fmt: skip
    assert out.returncode == 1
    assert "lacks pyserial paho-mqtt PyYAML and there is no pip to fetch it" in out.stdout
    assert "opkg update && opkg install python3-pip" in out.stdout
    assert snapshot(stage) == {}


def test_venus_installs_only_the_missing_packages_into_lib(tmp_path, source, fake_udevadm) -> None:
    """pip --target /data/extra200tomqtt/lib, with the version ranges of requirements.txt (fetches from PyPI)."""
    bare = str(tmp_path / "bare")
    subprocess.run([sys.executable, "-m", "venv", bare], check=True)  # pip, but no packages
    write(os.path.join(source, "requirements.txt"), "pyserial>=3.4\npaho-mqtt>=1.6,<2\nPyYAML>=5.1\nPyMySQL>=1.0\n")
    stage = str(tmp_path / "stage")
    path, _ = fake_udevadm(None)
    args = ("--platform", "venus", "--python", bare + "/bin/python3")
    out = run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    assert "Installing Python packages into /data/%s/lib: pyserial paho-mqtt PyYAML PyMySQL" % NAME in out.stdout
    lib = os.path.join(stage, VENUS_PREFIX, "lib")
    check = "import serial, yaml, pymysql, paho.mqtt; print(paho.mqtt.__version__)"
    version = subprocess.run(
        [bare + "/bin/python3", "-c", check], env=dict(os.environ, PYTHONPATH=lib), stdout=subprocess.PIPE, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert version.startswith("1.")  # the range of requirements.txt was used
    tree = snapshot(stage)
    again = run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    assert "Nothing changed" in again.stdout and snapshot(stage) == tree
    run(os.path.join(stage, VENUS_PREFIX, "uninstall.sh"), destdir=stage)
    assert snapshot(stage) == {}


def test_venus_by_id_name_pins_an_adapter_that_is_not_plugged_in(tmp_path, source, fake_udevadm) -> None:
    stage = str(tmp_path / "stage")
    by_id = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"
    write(os.path.join(source, "config.yaml"), "serial:\n  port: %s\n" % by_id)
    path, _ = fake_udevadm(None)
    args = ("--platform", "venus", "--no-deps", "--python", sys.executable)
    out = run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    rule = read(os.path.join(stage, "run/udev/rules.d", RULE)).splitlines()
    assert rule[2] == (
        'SUBSYSTEM=="tty", ACTION!="remove", ENV{ID_SERIAL}=="FTDI_FT232R_USB_UART_A10K1234", '
        'ENV{ID_USB_INTERFACE_NUM}=="00", ENV{VE_SERVICE}="ignore"'
    )
    assert "not plugged in" not in out.stdout


def test_venus_network_port_needs_no_rule(tmp_path, source, fake_udevadm) -> None:
    stage = str(tmp_path / "stage")
    write(os.path.join(source, "config.yaml"), "serial:\n  port: 'socket://192.168.1.20:8899'\n")
    path, _ = fake_udevadm(None)
    out = run(
        os.path.join(source, "install.sh"),
        "--platform",
        "venus",
        "--no-deps",
        "--python",
        sys.executable,
        destdir=stage,
        path=path,
    )
    assert "serial.port socket://192.168.1.20:8899 is not a local serial device" in out.stdout
    assert not os.path.exists(os.path.join(stage, "run"))


def test_venus_uninstall_leaves_user_files_and_data_unless_purged(tmp_path, source, fake_udevadm) -> None:
    stage = str(tmp_path / "stage")
    prefix = os.path.join(stage, VENUS_PREFIX)
    path, _ = fake_udevadm(None)
    args = ("--platform", "venus", "--no-deps", "--python", sys.executable)
    run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    write(os.path.join(prefix, "start.env"), "EXTRA200_RESTART_DELAY=30\n")
    write(os.path.join(prefix, "state", "energy.json"), "{}\n")
    removed = run(os.path.join(prefix, "uninstall.sh"), destdir=stage)
    expected = tree_of(
        {VENUS_PREFIX + "/start.env": 0o644, VENUS_PREFIX + "/state/energy.json": 0o644}, ["data", VENUS_PREFIX], {}
    )
    expected[VENUS_PREFIX + "/state"] = ("dir", 0o700)
    assert files_and_modes(snapshot(stage)) == expected
    assert "  /data/%s/state (the daemon's state; --purge removes it)" % NAME in removed.stdout

    run(os.path.join(source, "install.sh"), *args, destdir=stage, path=path)
    purged = run(os.path.join(prefix, "uninstall.sh"), "--purge", "--keep-config", destdir=stage)
    assert sorted(snapshot(stage)) == ["data", VENUS_PREFIX, VENUS_PREFIX + "/config.yaml", VENUS_PREFIX + "/start.env"]
    assert "Removed /data/%s/state (--purge)." % NAME in purged.stdout


def test_venus_boot_recreates_the_service_link_and_udev_rule(tmp_path, source, fake_udevadm) -> None:
    """A real (not staged) install on paths under a temporary directory, then a simulated reboot."""
    if os.geteuid() != 0:
        pytest.skip("a real install needs root (CI runs tests as root)")
    base = str(tmp_path / "gx")
    prefix = base + "/data/" + NAME
    service = base + "/service"
    rules = base + "/run/udev/rules.d"
    path, calls = fake_udevadm(FTDI_PROPERTIES)
    run(
        os.path.join(source, "install.sh"),
        "--platform", "venus", "--no-deps", "--python", sys.executable,
        "--prefix", prefix, "--service-dir", service, "--rc-local", base + "/data/rc.local",
        "--udev-dir", rules, "--log-dir", base + "/var/log/" + NAME,
        path=path,
    )  # fmt: skip
    link = os.path.join(service, NAME)
    assert os.readlink(link) == prefix + "/service"
    trigger = "trigger --action=change --subsystem-match=tty --property-match=ID_SERIAL=FTDI_FT232R_USB_UART_A10K1234"
    assert read(calls).splitlines() == ["control --reload-rules", trigger]

    # A reboot: /service entries and /run are gone; Venus OS runs /data/rc.local.
    os.remove(link)
    shutil.rmtree(base + "/run")
    os.remove(calls)
    subprocess.run(["sh", base + "/data/rc.local"], env=dict(os.environ, PATH=path), check=True)
    assert os.readlink(link) == prefix + "/service"
    assert read(os.path.join(rules, RULE)) == read(os.path.join(prefix, RULE))
    assert read(calls).splitlines() == ["control --reload-rules", trigger]
    # Boot again with everything in place: nothing to do.
    os.remove(calls)
    subprocess.run(["sh", base + "/data/rc.local"], env=dict(os.environ, PATH=path), check=True)
    assert not os.path.exists(calls)

    run(os.path.join(prefix, "uninstall.sh"), path=path)
    assert snapshot(base) == {}
    assert read(calls).splitlines() == ["control --reload-rules", trigger]


def test_the_repository_itself_installs(tmp_path) -> None:
    """Every file of the package is installed."""
    stage = str(tmp_path / "stage")
    out = run(os.path.join(ROOT, "install.sh"), "--platform", "systemd", "--no-deps", "--python", sys.executable,
              "--smoke-test", destdir=stage)  # fmt: skip
    assert "Smoke test passed." in out.stdout
    prefix = os.path.join(stage, "opt", NAME)
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, "extra200")):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".pyc"):
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                assert read(os.path.join(prefix, rel)) == read(os.path.join(ROOT, rel))
    run(os.path.join(prefix, "uninstall.sh"), destdir=stage)
    assert snapshot(stage) == {}
