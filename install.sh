#!/bin/sh
# install.sh: install extra200tomqtt as a service that starts at boot and restarts when it dies.
#
#   sudo ./install.sh      Raspberry Pi OS, Debian, Ubuntu (systemd): /opt/extra200tomqtt
#   ./install.sh           as root on a Victron GX device (Venus OS): /data/extra200tomqtt
#
# Running it again upgrades in place and changes nothing when nothing is new.
# An existing config.yaml is kept.  uninstall.sh removes what this script wrote.
#
# Options:
#   --platform auto|systemd|venus  what to install for (default: detected)
#   --prefix DIR        install directory
#   --python PATH       Python 3.8+ interpreter (default: python3)
#   --no-deps           do not install Python packages; only say what is missing
#   --smoke-test        run the daemon once against its built-in simulator afterwards
# Venus OS only:
#   --adapter PORT|none the battery's serial adapter, kept away from serial-starter
#                       (default: serial.port from config.yaml)
#   --service-dir DIR   daemontools scan directory (default /service)
#   --rc-local FILE     boot script (default /data/rc.local)
#   --udev-dir DIR      runtime udev rules directory (default /run/udev/rules.d)
#   --log-dir DIR       multilog directory (default /var/log/extra200tomqtt)
#   --boot              re-create the service link and udev rule (the rc.local line runs this)
#
# Staging: DESTDIR=/some/dir ./install.sh --platform systemd|venus writes every
# file under /some/dir exactly as a real install would, and prints the commands
# that act on the running system (useradd, systemctl, svc, udevadm) instead of
# running them.
#
# Plain POSIX sh (Venus OS, dash, bash); shellcheck-clean.

set -eu
set -f

NAME=extra200tomqtt
MANIFEST=.install-manifest
# Sorted after every other rule file (digits and letters), so no Venus rule
# can override VE_SERVICE after it, and after 60-persistent-serial.rules,
# which sets ID_SERIAL.
RULE_NAME=zz-extra200tomqtt.rules
# Python module:package, in requirements.txt; the last one is optional.
REQUIRED_MODULES="serial:pyserial paho.mqtt:paho-mqtt yaml:PyYAML"
OPTIONAL_MODULES="pymysql:PyMySQL"
# The program: top-level files and package directories copied to the prefix.
PROGRAM_FILES="extra200tomqtt.py requirements.txt"
PROGRAM_PACKAGES="extra200"

src_dir=$(cd "$(dirname "$0")" && pwd -P)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}

platform=auto
prefix=
python=
deps=yes
smoke=no
boot=no
adapter=auto
service_dir=/service
rc_local=/data/rc.local
udev_dir=/run/udev/rules.d
venus_log_dir=/var/log/$NAME
changed=0

say() {
    printf '%s\n' "$*"
}

warn() {
    printf 'install.sh: warning: %s\n' "$*" >&2
}

die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^# Plain POSIX/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# R PATH: where PATH is written (under DESTDIR when staging).
R() {
    printf '%s%s' "$DESTDIR" "$1"
}

staging() {
    [ -n "$DESTDIR" ]
}

# act COMMAND...: run a command that changes the live system; only show it when staging.
act() {
    if staging; then
        say "  (staging, not run) $*"
        return 0
    fi
    "$@"
}

check_path() {
    case $2 in
        /*) ;;
        *) die "$1 must be an absolute path, got '$2'" ;;
    esac
    case $2 in
        *[!A-Za-z0-9/._+-]*) die "$1 may only contain letters, digits and / . _ + -, got '$2'" ;;
    esac
}

parse_args() {
    while [ $# -gt 0 ]; do
        option=$1
        case $option in
            --*=*)
                value=${option#*=}
                option=${option%%=*}
                ;;
            --platform | --prefix | --python | --adapter | --service-dir | --rc-local | --udev-dir | --log-dir)
                [ $# -ge 2 ] || die "$option needs a value"
                value=$2
                shift
                ;;
            *) value= ;;
        esac
        case $option in
            --platform) platform=$value ;;
            --prefix) prefix=$value ;;
            --python) python=$value ;;
            --adapter) adapter=$value ;;
            --service-dir) service_dir=$value ;;
            --rc-local) rc_local=$value ;;
            --udev-dir) udev_dir=$value ;;
            --log-dir) venus_log_dir=$value ;;
            --no-deps) deps=no ;;
            --smoke-test) smoke=yes ;;
            --boot) boot=yes ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
        shift
    done
}

detect_platform() {
    if [ "$platform" = auto ]; then
        if [ -d /opt/victronenergy ]; then
            platform=venus
        elif [ -d /run/systemd/system ]; then
            platform=systemd
        else
            die "found neither systemd nor Venus OS. Run start.sh from your init system yourself, or force --platform systemd"
        fi
    fi
    case $platform in
        systemd | venus) ;;
        *) die "--platform must be auto, systemd or venus, got '$platform'" ;;
    esac
}

# --- the manifest: everything this script wrote, for upgrades and uninstall.sh ---

work=
new_manifest=
old_manifest=

# record KIND PATH [DETAIL...]: one manifest line, fields separated by spaces.
record() {
    manifest_line=$1
    shift
    for field in "$@"; do
        manifest_line="$manifest_line $field"
    done
    printf '%s\n' "$manifest_line" >>"$new_manifest"
}

# in_old LINE: the previous install recorded LINE.
in_old() {
    [ -f "$old_manifest" ] && grep -qxF "$*" "$old_manifest"
}

# remove_stale: delete files and empty directories of the previous install that this one no longer writes.
remove_stale() {
    [ -f "$old_manifest" ] || return 0
    awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }' "$old_manifest" >"$work/old"
    while read -r kind path _; do
        case $kind in
            file | dir) ;;
            *) continue ;;
        esac
        if grep -qxF "$kind $path" "$new_manifest"; then
            continue
        fi
        if [ "$kind" = file ] && [ -f "$(R "$path")" ]; then
            rm -f "$(R "$path")"
            say "Removed $path (no longer part of $NAME)"
            changed=1
        elif [ "$kind" = dir ] && [ -d "$(R "$path")" ]; then
            rm -rf "$(R "$path")/__pycache__"
            rmdir "$(R "$path")" 2>/dev/null || true
        fi
    done <"$work/old"
}

# save_manifest [partial]: write the manifest; "partial" (before a step that
# may fail) keeps the previous lines too, so uninstall.sh still finds all.
save_manifest() {
    target=$(R "$prefix/$MANIFEST")
    if [ "${1:-}" = partial ] && [ -f "$target" ]; then
        if awk 'NR == FNR { old[$0] = 1; next } !($0 in old) { exit 1 }' "$target" "$new_manifest"; then
            return
        fi
        cat "$new_manifest" "$target" >"$work/merged"
    else
        cp "$new_manifest" "$work/merged"
    fi
    # Keep the first of duplicate lines: order matters to uninstall.sh.
    awk '!seen[$0]++' "$work/merged" >"$work/save"
    if [ -f "$target" ] && cmp -s "$work/save" "$target"; then
        return
    fi
    cp "$work/save" "$target.new"
    chmod 0644 "$target.new"
    mv -f "$target.new" "$target"
}

# --- writing files without touching what is already right ---

# make_dir DIR MODE: create DIR and its missing parents, recording the ones created here.
make_dir() {
    path=
    old_ifs=$IFS
    IFS=/
    for part in ${1#/}; do
        path=$path/$part
        if [ -d "$(R "$path")" ]; then
            if in_old "dir $path"; then
                record dir "$path"
            fi
        else
            mkdir "$(R "$path")"
            chmod 0755 "$(R "$path")"
            record dir "$path"
            changed=1
        fi
    done
    IFS=$old_ifs
    if [ "$(stat -c %a "$(R "$1")")" != "${2#0}" ]; then
        chmod "$2" "$(R "$1")"
    fi
}

# put_file SOURCE DEST MODE: copy SOURCE to DEST unless identical (so a re-run changes nothing).
put_file() {
    dest=$(R "$2")
    if [ -f "$dest" ] && cmp -s "$1" "$dest"; then
        if [ "$(stat -c %a "$dest")" != "${3#0}" ]; then
            chmod "$3" "$dest"
        fi
    else
        cp "$1" "$dest.new"
        chmod "$3" "$dest.new"
        mv -f "$dest.new" "$dest"
        changed=1
        file_changed=1
    fi
    record file "$2"
}

# put_output DEST MODE COMMAND...: like put_file, with what COMMAND prints.
# (Not a pipe into put_file: that would run it in a subshell and lose $changed.)
put_output() {
    dest=$1
    mode=$2
    shift 2
    "$@" >"$work/text"
    put_file "$work/text" "$dest" "$mode"
}

# --- Python ---

# missing_modules PYTHON LIST: the packages of LIST ("module:package ...") PYTHON cannot import.
missing_modules() {
    missing=
    for pair in $2; do
        if ! "$1" -c "import ${pair%%:*}" >/dev/null 2>&1; then
            missing="$missing ${pair#*:}"
        fi
    done
    printf '%s' "${missing# }"
}

check_python() {
    if [ -z "$python" ]; then
        if [ "$platform" = venus ] && [ -x /usr/bin/python3 ]; then
            python=/usr/bin/python3
        else
            python=$(command -v python3) || die "python3 is not installed"
        fi
    fi
    case $python in
        /*) ;;
        *) python=$(command -v "$python") || die "--python: no program '$python'" ;;
    esac
    check_path --python "$python"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null ||
        die "$python is not Python 3.8 or later"
}

# The interpreter that can read YAML now (the venv once it exists).
yaml_python() {
    for candidate in "$(R "$prefix")/venv/bin/python3" "$python"; do
        if [ -x "$candidate" ] && PYTHONPATH=$(R "$prefix")/lib "$candidate" -c 'import yaml' 2>/dev/null; then
            printf '%s' "$candidate"
            return 0
        fi
    done
    return 1
}

setup_venv() {
    venv=$prefix/venv
    venv_python=$(R "$venv")/bin/python3
    if [ "$deps" = no ]; then
        say "Not installing Python packages (--no-deps): the service needs $venv with the packages of requirements.txt"
        return
    fi
    if ! "$venv_python" -c '' >/dev/null 2>&1; then
        # Missing, or broken by a Python upgrade: (re)create it.
        rm -rf "$(R "$venv")"
        say "Creating the Python virtual environment $venv (it also sees Debian's python3-* packages)"
        "$python" -m venv --system-site-packages "$(R "$venv")" ||
            die "could not create a virtual environment. On Debian or Raspberry Pi OS: sudo apt install python3-venv, then run install.sh again"
        changed=1
    fi
    missing=$(missing_modules "$venv_python" "$REQUIRED_MODULES $OPTIONAL_MODULES")
    if [ -n "$missing" ]; then
        say "Installing Python packages into $venv: $missing"
        "$venv_python" -m pip install --disable-pip-version-check --no-input -r "$(R "$prefix")/requirements.txt" ||
            die "pip could not install $missing. Check the network, or install them from Debian (sudo apt install python3-serial python3-paho-mqtt python3-yaml python3-pymysql), then run install.sh again"
        changed=1
    fi
}

# Venus OS has no virtual environments and may have no pip: packages the
# system Python lacks go to $prefix/lib (pip --target), which start.sh puts
# on PYTHONPATH.
venus_missing() {
    PYTHONPATH=$(R "$prefix")/lib missing_modules "$python" "$1"
}

venus_has_pip() {
    "$python" -m pip --version >/dev/null 2>&1
}

venus_preflight() {
    [ "$deps" = yes ] || return 0
    missing=$(venus_missing "$REQUIRED_MODULES")
    if [ -n "$missing" ] && ! venus_has_pip; then
        die "this GX device's Python lacks $missing and there is no pip to fetch it. Install pip with: opkg update && opkg install python3-pip (it needs internet), then run ./install.sh again. Nothing was changed"
    fi
}

venus_deps() {
    lib=$prefix/lib
    if in_old "tree $lib"; then
        record tree "$lib"
    fi
    missing=$(venus_missing "$REQUIRED_MODULES $OPTIONAL_MODULES")
    [ -n "$missing" ] || return 0
    if [ "$deps" = no ]; then
        warn "Python packages missing (--no-deps, not installed): $missing"
        return 0
    fi
    if ! venus_has_pip; then
        # Only optional packages are missing here (venus_preflight checked the rest).
        warn "$missing not installed (there is no pip); it is needed only for database.enabled. For it: opkg update && opkg install python3-pip, then run ./install.sh again"
        return 0
    fi
    record tree "$lib"
    save_manifest partial
    # The version ranges of requirements.txt, for just the missing packages.
    specs=$(awk -v want=" $missing " '
        BEGIN { want = tolower(want) }
        { name = tolower($1); sub(/[<>=!~;\[].*/, "", name) }
        index(want, " " name " ") { gsub(/[ \t]/, ""); print }' "$src_dir/requirements.txt")
    say "Installing Python packages into $lib: $missing"
    # shellcheck disable=SC2086  # one word per requirement
    "$python" -m pip install --disable-pip-version-check --no-input --target "$(R "$lib")" ${specs:-$missing} ||
        die "pip could not install $missing into $lib (is the GX device online?); run ./install.sh again when it is"
    changed=1
}

# --- files common to both platforms ---

check_sources() {
    for file in $PROGRAM_FILES config.yaml start.sh install.sh uninstall.sh; do
        [ -f "$src_dir/$file" ] || die "$src_dir/$file is missing: run install.sh from a complete copy of $NAME"
    done
    for package in $PROGRAM_PACKAGES; do
        [ -f "$src_dir/$package/__init__.py" ] || die "$src_dir/$package is missing: run install.sh from a complete copy of $NAME"
    done
    if [ "$platform" = systemd ] && [ ! -f "$src_dir/$NAME.service" ]; then
        die "$src_dir/$NAME.service is missing"
    fi
    if [ "$(R "$prefix")" = "$src_dir" ]; then
        die "install.sh runs from $src_dir, the install directory itself. Unpack $NAME somewhere else (e.g. /tmp/$NAME) and run install.sh from there"
    fi
}

copy_program() {
    make_dir "$prefix" 0755
    for file in $PROGRAM_FILES; do
        put_file "$src_dir/$file" "$prefix/$file" 0644
    done
    put_file "$src_dir/start.sh" "$prefix/start.sh" 0755
    put_file "$src_dir/uninstall.sh" "$prefix/uninstall.sh" 0755
    if [ "$platform" = venus ]; then
        # The rc.local line runs this copy with --boot.
        put_file "$src_dir/install.sh" "$prefix/install.sh" 0755
    fi
    put_file "$src_dir/config.yaml" "$prefix/config.example.yaml" 0644
    (cd "$src_dir" && find $PROGRAM_PACKAGES -name __pycache__ -prune -o -type f ! -name '*.pyc' -print) |
        LC_ALL=C sort >"$work/list"
    while read -r file; do
        make_dir "$prefix/$(dirname "$file")" 0755
        put_file "$src_dir/$file" "$prefix/$file" 0644
    done <"$work/list"
}

# show_new_keys: after an upgrade, list the keys the shipped config.yaml has and the user's has not.
show_new_keys() {
    if cmp -s "$src_dir/config.yaml" "$(R "$prefix/config.yaml")"; then
        return
    fi
    if ! reader=$(yaml_python); then
        say "  Compare it with $prefix/config.example.yaml for new keys (PyYAML is not available to list them)."
        return
    fi
    PYTHONPATH=$(R "$prefix")/lib "$reader" - "$(R "$prefix/config.yaml")" "$src_dir/config.yaml" "$prefix/config.example.yaml" <<'EOF'
import sys

import yaml


def keys(node, prefix=""):
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            name = prefix + str(key)
            found.append(name)
            found.extend(keys(value, name + "."))
    return found


try:
    with open(sys.argv[1]) as handle:
        mine = keys(yaml.safe_load(handle))
except (OSError, yaml.YAMLError) as exc:
    print("  Your config.yaml cannot be read as YAML: %s" % exc)
    sys.exit(0)
with open(sys.argv[2]) as handle:
    shipped = keys(yaml.safe_load(handle))
new = [key for key in shipped if key not in mine]
old = [key for key in mine if key not in shipped]
if new:
    print("  The shipped config.yaml has keys yours does not (their defaults apply; see %s):" % sys.argv[3])
    for key in new:
        print("    " + key)
if old:
    print("  Yours has keys the shipped one does not (check their spelling):")
    for key in old:
        print("    " + key)
EOF
}

install_config() {
    config=$prefix/config.yaml
    if [ -e "$(R "$config")" ]; then
        if in_old "config $config created"; then
            record config "$config" created
        else
            record config "$config" kept
        fi
        say "Keeping your $config."
        show_new_keys
    else
        cp "$src_dir/config.yaml" "$(R "$config")"
        record config "$config" created
        changed=1
        say "Installed $config: edit it (serial.port, mqtt.broker, ...) and restart the service."
    fi
    # It holds broker and database passwords: root and the service only.
    if [ "$platform" = systemd ]; then
        mode=640
        owner=root:$NAME
    else
        mode=600
        owner=root:root
    fi
    if [ "$(stat -c %a "$(R "$config")")" != "$mode" ]; then
        chmod "$mode" "$(R "$config")"
    fi
    if [ "$(stat -c %U:%G "$(R "$config")")" != "$owner" ]; then
        act chown "$owner" "$(R "$config")"
    fi
}

# --- systemd ---

systemd_user() {
    # (When staging, the user made by the first run exists only in the manifest.)
    if getent passwd "$NAME" >/dev/null 2>&1 || { staging && in_old "user $NAME"; }; then
        if in_old "user $NAME"; then
            record user "$NAME"
        fi
        if getent passwd "$NAME" >/dev/null 2>&1 && getent group dialout >/dev/null 2>&1 &&
            ! id -nG "$NAME" | tr ' ' '\n' | grep -qx dialout; then
            act usermod -a -G dialout "$NAME"
        fi
        return
    fi
    groups=
    if getent group dialout >/dev/null 2>&1; then
        groups="--groups dialout"
    else
        warn "there is no group dialout: give the user $NAME access to the serial port yourself"
    fi
    changed=1
    # shellcheck disable=SC2086  # $groups is two words or none
    act useradd --system --user-group --no-create-home --home-dir "/var/lib/$NAME" \
        --shell /usr/sbin/nologin $groups "$NAME"
    record user "$NAME"
}

install_systemd() {
    unit_dir=/etc/systemd/system
    make_dir "$unit_dir" 0755
    file_changed=0
    put_output "$unit_dir/$NAME.service" 0644 sed "s|/opt/$NAME|$prefix|g" "$src_dir/$NAME.service"
    unit_changed=$file_changed
    record unit "$NAME.service"
    # Made by systemd (StateDirectory=, LogsDirectory=); uninstall.sh --purge removes them.
    record state "/var/lib/$NAME"
    record logs "/var/log/$NAME"
}

activate_systemd() {
    if [ "$unit_changed" = 1 ]; then
        act systemctl daemon-reload
    fi
    if staging || ! systemctl is-enabled --quiet "$NAME.service" 2>/dev/null; then
        act systemctl enable "$NAME.service"
    fi
    if [ "$changed" = 1 ]; then
        act systemctl restart "$NAME.service"
    else
        act systemctl start "$NAME.service"
    fi
}

# --- Venus OS ---

run_script() {
    cat <<EOF
#!/bin/sh
# $NAME daemontools service, written by install.sh: run install.sh again to change it.
# Output goes to log/run (multilog in $venus_log_dir, in RAM on Venus OS),
# so start.sh mounts no ramdisk of its own here.
exec 2>&1
EXTRA200_PYTHON=$python
EXTRA200_RAMDISK=
export EXTRA200_PYTHON EXTRA200_RAMDISK
# Your own settings for start.sh (EXTRA200_RESTART_DELAY=30, ...), if any.
if [ -r $prefix/start.env ]; then
    set -a
    # shellcheck source=/dev/null
    . $prefix/start.env
    set +a
fi
exec $prefix/start.sh --config $prefix/config.yaml --state-dir $prefix/state
EOF
}

log_script() {
    cat <<EOF
#!/bin/sh
# $NAME log service, written by install.sh: 5 files of 1 MB, tai64n time stamps
# (read them with: tai64nlocal < $venus_log_dir/current).
exec 2>&1
mkdir -p $venus_log_dir
exec multilog t s1000000 n5 $venus_log_dir
EOF
}

install_venus_service() {
    make_dir "$prefix/state" 0700
    record state "$prefix/state"
    record logs "$venus_log_dir"
    make_dir "$prefix/service" 0755
    make_dir "$prefix/service/log" 0755
    put_output "$prefix/service/run" 0755 run_script
    put_output "$prefix/service/log/run" 0755 log_script
}

# config_port: serial.port from the installed config.yaml.
config_port() {
    file=$(R "$prefix/config.yaml")
    if reader=$(yaml_python); then
        PYTHONPATH=$(R "$prefix")/lib "$reader" -c '
import sys, yaml
with open(sys.argv[1]) as handle:
    data = yaml.safe_load(handle) or {}
print((data.get("serial") or {}).get("port") or "/dev/ttyUSB0")
' "$file" 2>/dev/null && return
    fi
    # Without PyYAML: the block style of the shipped file.
    awk '/^serial:/ { inside = 1; next } /^[^ #]/ { inside = 0 }
        inside && $1 == "port:" { gsub(/["'\'']/, "", $2); print $2; found = 1; exit }
        END { if (!found) print "/dev/ttyUSB0" }' "$file"
}

# udev_value KEY: one property from $properties, restricted to safe characters.
udev_value() {
    printf '%s\n' "$properties" | sed -n "s/^$1=//p" | sed -n '1p' | tr -cd 'A-Za-z0-9_.:+-'
}

udev_rule() {
    echo "# Written by $NAME install.sh: keeps Venus OS serial-starter off the battery console."
    echo "# Adapter: $port, $what."
    echo "SUBSYSTEM==\"tty\", ACTION!=\"remove\", $match, ENV{VE_SERVICE}=\"ignore\""
}

# Venus OS's serial-starter probes every USB serial port with its own drivers
# unless the port's udev property VE_SERVICE is "ignore".  This writes a rule
# that sets it for the battery's adapter, identified by its serial number, else
# by the USB socket it is plugged into, else by its kernel name.
install_udev_rule() {
    if [ "$adapter" = none ]; then
        say "Not excluding a serial adapter from serial-starter (--adapter none)."
        return
    fi
    port=$adapter
    if [ "$port" = auto ]; then
        port=$(config_port)
    fi
    case $port in
        /dev/*) ;;
        *)
            say "serial.port $port is not a local serial device: no serial-starter exclusion needed."
            return
            ;;
    esac
    device=$(readlink -f "$port" 2>/dev/null || printf '%s' "$port")
    kernel=$(basename "$device")
    properties=$(udevadm info --query=property --name="$device" 2>/dev/null || true)
    id_serial=$(udev_value ID_SERIAL)
    id_path=$(udev_value ID_PATH)
    interface=$(udev_value ID_USB_INTERFACE_NUM)
    about="$(udev_value ID_VENDOR) $(udev_value ID_MODEL)"
    what="the adapter with serial number $(udev_value ID_SERIAL_SHORT) ($about), in any USB socket"
    if [ -z "$(udev_value ID_SERIAL_SHORT)" ]; then
        id_serial=
    fi
    if [ -z "$properties" ]; then
        # Not plugged in; a /dev/serial/by-id/ name still tells the adapter:
        # usb-<ID_SERIAL>-if<ID_USB_INTERFACE_NUM>[-port<N>].
        case ${port##*/} in
            usb-*-if[0-9][0-9]*)
                name=${port##*/}
                name=${name#usb-}
                id_serial=$(printf '%s' "${name%-if[0-9][0-9]*}" | tr -cd 'A-Za-z0-9_.:+-')
                interface=${name##*-if}
                interface=${interface%%-*}
                what="the adapter $id_serial (from its /dev/serial/by-id name), in any USB socket"
                ;;
        esac
    fi
    if [ -n "$id_serial" ]; then
        match="ENV{ID_SERIAL}==\"$id_serial\""
        trigger="--property-match=ID_SERIAL=$id_serial"
        if [ -n "$interface" ]; then
            match="$match, ENV{ID_USB_INTERFACE_NUM}==\"$interface\""
        fi
    elif [ -n "$id_path" ]; then
        match="ENV{ID_PATH}==\"$id_path\""
        trigger="--property-match=ID_PATH=$id_path"
        what="the adapter ($about, no serial number) in USB socket $id_path: plug it into the same socket"
    else
        match="KERNEL==\"$kernel\""
        trigger="--sysname-match=$kernel"
        what="whatever adapter is called $kernel"
        warn "$port is not plugged in (or not a USB adapter), so the rule names $kernel, which after a reboot may be another adapter. Plug the battery's adapter in and run ./install.sh again to pin it by serial number."
    fi
    file_changed=0
    put_output "$prefix/$RULE_NAME" 0644 udev_rule
    make_dir "$udev_dir" 0755
    put_file "$(R "$prefix/$RULE_NAME")" "$udev_dir/$RULE_NAME" 0644
    record udev "$udev_dir/$RULE_NAME" "$trigger"
    say "serial-starter leaves alone $what."
    if [ "$file_changed" = 1 ]; then
        if ! { act udevadm control --reload-rules &&
            act udevadm trigger --action=change --subsystem-match=tty "$trigger"; }; then
            warn "udevadm could not apply the rule now: it applies at the next boot, or unplug and plug in the adapter"
        fi
    fi
}

install_rc_local() {
    line="if [ -x $prefix/install.sh ]; then $prefix/install.sh --boot; fi # $NAME"
    file=$(R "$rc_local")
    if [ ! -e "$file" ] && [ ! -L "$file" ]; then
        make_dir "$(dirname "$rc_local")" 0755
        printf '#!/bin/sh\n\n%s\n' "$line" >"$file"
        chmod 0755 "$file"
        record rclocal-created "$rc_local"
        changed=1
    else
        if in_old "rclocal-created $rc_local"; then
            record rclocal-created "$rc_local"
        fi
        if ! grep -qxF "$line" "$file"; then
            # Append, never rewrite: the rest of the file is the user's.
            if [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then
                # It ended without a line end; uninstall.sh takes this one away again.
                printf '\n' >>"$file"
                record rclocal-noeol "$rc_local"
            fi
            printf '%s\n' "$line" >>"$file"
            changed=1
        elif in_old "rclocal-noeol $rc_local"; then
            record rclocal-noeol "$rc_local"
        fi
        if [ ! -x "$file" ]; then
            # uninstall.sh puts the old mode back.
            record rclocal-mode "$rc_local" "$(stat -c %a "$file")"
            chmod +x "$file"
            say "Made $rc_local executable (Venus OS runs it at boot only then)."
        else
            grep "^rclocal-mode $rc_local " "$old_manifest" 2>/dev/null >>"$new_manifest" || true
        fi
    fi
    record rclocal "$rc_local" "$line"
}

install_service_link() {
    link=$service_dir/$NAME
    target=$prefix/service
    make_dir "$service_dir" 0755
    file=$(R "$link")
    if [ -L "$file" ] && [ "$(readlink "$file")" = "$target" ]; then
        :
    elif [ -L "$file" ] && in_old "link $link $(readlink "$file")"; then
        rm -f "$file"
        ln -s "$target" "$file"
        changed=1
    elif [ -e "$file" ] || [ -L "$file" ]; then
        die "$link exists and was not made by install.sh: remove it first"
    else
        ln -s "$target" "$file"
        changed=1
        say "Created the service $link (svscan starts it within 5 s)."
    fi
    record link "$link" "$target"
}

activate_venus() {
    link=$service_dir/$NAME
    if [ "$changed" = 1 ]; then
        if staging; then
            act svc -t "$link"
        elif svok "$link" 2>/dev/null; then
            # A new version or settings: restart the running service.
            svc -t "$link"
            say "Restarted the service."
        fi
    fi
}

# install.sh --boot (from rc.local): re-create what a reboot or firmware update removes.
boot() {
    manifest=$src_dir/$MANIFEST
    [ -f "$manifest" ] || exit 0
    while read -r kind path extra; do
        case $kind in
            link)
                if [ ! -L "$path" ]; then
                    mkdir -p "$(dirname "$path")"
                    ln -s "$extra" "$path"
                fi
                ;;
            udev)
                if ! cmp -s "$src_dir/$RULE_NAME" "$path"; then
                    mkdir -p "$(dirname "$path")"
                    cp "$src_dir/$RULE_NAME" "$path"
                    udevadm control --reload-rules || true
                    # shellcheck disable=SC2086  # $extra is one option
                    udevadm trigger --action=change --subsystem-match=tty $extra || true
                fi
                ;;
        esac
    done <"$manifest"
    exit 0
}

# --- main ---

summary() {
    say ""
    if [ "$changed" = 0 ]; then
        say "Nothing changed: $NAME was already installed like this."
    else
        say "$NAME is installed in $prefix."
    fi
    if [ "$platform" = systemd ]; then
        say "  status:   systemctl status $NAME"
        say "  log:      journalctl -u $NAME -f   (and /var/log/$NAME/$NAME.log, in RAM)"
        say "  settings: $prefix/config.yaml, then: sudo systemctl restart $NAME"
        say "  try it without a battery: $prefix/venv/bin/python3 $prefix/extra200tomqtt.py --port pylonsim:// --once"
    else
        say "  status:   svstat $service_dir/$NAME"
        say "  log:      tail -F $venus_log_dir/current | tai64nlocal"
        say "  settings: $prefix/config.yaml, then: svc -t $service_dir/$NAME"
        say "  try it without a battery: $python $prefix/extra200tomqtt.py --port pylonsim:// --once"
    fi
    say "  remove:   $prefix/uninstall.sh"
}

smoke_test() {
    if [ "$platform" = systemd ] && [ -x "$(R "$prefix")/venv/bin/python3" ]; then
        runner=$(R "$prefix")/venv/bin/python3
    else
        runner=$python
    fi
    say "Smoke test: one poll of the built-in simulator (pylonsim://)..."
    if PYTHONPATH=$(R "$prefix")/lib "$runner" "$(R "$prefix")/extra200tomqtt.py" --port pylonsim:// --once >/dev/null; then
        say "Smoke test passed."
    else
        die "the smoke test failed (see the messages above)"
    fi
}

main() {
    parse_args "$@"
    if [ "$boot" = yes ]; then
        boot
    fi
    detect_platform
    if [ -z "$prefix" ]; then
        if [ "$platform" = venus ]; then prefix=/data/$NAME; else prefix=/opt/$NAME; fi
    fi
    check_path --prefix "$prefix"
    check_path --service-dir "$service_dir"
    check_path --rc-local "$rc_local"
    check_path --udev-dir "$udev_dir"
    check_path --log-dir "$venus_log_dir"
    if staging; then
        check_path DESTDIR "$DESTDIR"
        say "Staging into $DESTDIR: nothing outside it is changed."
        mkdir -p "$DESTDIR"
    elif [ "$(id -u)" != 0 ]; then
        die "run install.sh as root (sudo ./install.sh)"
    fi
    check_sources
    check_python

    old_manifest=$(R "$prefix/$MANIFEST")
    if [ -f "$old_manifest" ] && ! grep -qxF "platform $platform" "$old_manifest"; then
        die "$prefix holds an install for another platform: run $prefix/uninstall.sh first"
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    new_manifest=$work/manifest
    : >"$new_manifest"
    record platform "$platform"

    if [ "$platform" = systemd ]; then
        if ! staging && ! [ -x "$(R "$prefix")/venv/bin/python3" ] && [ "$deps" = yes ] &&
            ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            die "$python cannot make virtual environments. On Debian or Raspberry Pi OS: sudo apt install python3-venv, then run install.sh again. Nothing was changed"
        fi
        systemd_user
        copy_program
        record tree "$prefix/venv"
        save_manifest partial
        setup_venv
        install_config
        install_systemd
    else
        venus_preflight
        copy_program
        save_manifest partial
        venus_deps
        install_config
        install_venus_service
        install_udev_rule
        install_rc_local
        install_service_link
    fi
    remove_stale
    save_manifest
    if [ "$platform" = systemd ]; then
        activate_systemd
    else
        activate_venus
    fi
    if [ "$smoke" = yes ]; then
        smoke_test
    fi
    summary
}

main "$@"
