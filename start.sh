#!/bin/sh
# start.sh: run the extra200tomqtt daemon, restart it whenever it exits, stop it cleanly.
#
# Usage:
#   start.sh [DAEMON OPTIONS...]   supervise the daemon; the options go to the daemon
#                                  (for example --config FILE --state-dir DIR)
#   start.sh --mount-only          mount the log ramdisk and exit (systemd ExecStartPre=+)
#   start.sh --unmount             unmount the log ramdisk if start.sh mounted it
#
# The daemon logs to standard error (kept by journald or multilog) and to a
# rotating log file in a tmpfs ramdisk, so that the SD card or flash is not
# worn.  start.sh passes that file to the daemon in EXTRA200_LOG_FILE and never
# edits config.yaml.  When the ramdisk cannot be mounted (no privilege, not
# Linux) it says so once and uses a directory on disk instead.
#
# SIGTERM, SIGINT and SIGHUP stop the daemon (it is sent SIGTERM, publishes
# "offline" and exits) and then start.sh exits 0.  A daemon that has not
# stopped after EXTRA200_STOP_TIMEOUT seconds is killed.
#
# Settings (environment variables, all optional):
#   EXTRA200_HOME          install directory (default: the directory of start.sh)
#   EXTRA200_PYTHON        Python interpreter (default: $EXTRA200_HOME/venv/bin/python3
#                          when it exists, else python3)
#   EXTRA200_DAEMON_CMD    a simple command (program and arguments) run instead of
#                          "$EXTRA200_PYTHON $EXTRA200_HOME/extra200tomqtt.py"; the
#                          options given to start.sh are appended.  It is run with
#                          exec under sh -c, so the signals reach it.
#   EXTRA200_RAMDISK       ramdisk mount point (default /var/log/extra200tomqtt);
#                          set it empty for no ramdisk and no log file at all
#   EXTRA200_RAMDISK_SIZE  ramdisk size, as mount -o size= takes it (default 50M)
#   EXTRA200_LOG_OWNER     user that owns the ramdisk when root mounts it
#                          (default: the user running start.sh)
#   EXTRA200_LOG_FALLBACK  directory on disk used when the ramdisk cannot be
#                          mounted (default $EXTRA200_HOME/logs)
#   EXTRA200_LOG_FILE      when already set, used as is: no ramdisk is mounted
#   EXTRA200_RESTART_DELAY seconds before restarting the daemon (default 10)
#   EXTRA200_RESTART_MAX_DELAY  longest delay; also used after a configuration
#                          error, exit code 2 (default 300)
#   EXTRA200_QUICK_EXIT    a daemon that ran fewer seconds than this died quickly,
#                          and each further quick exit doubles the delay (default 60)
#   EXTRA200_STOP_TIMEOUT  seconds the daemon gets to stop before SIGKILL (default 10)
#
# Plain POSIX sh (dash, busybox ash, bash); shellcheck-clean.

set -u

home_dir=${EXTRA200_HOME:-$(cd "$(dirname "$0")" && pwd -P)}
ramdisk=${EXTRA200_RAMDISK-/var/log/extra200tomqtt}
ramdisk_size=${EXTRA200_RAMDISK_SIZE:-50M}
log_owner=${EXTRA200_LOG_OWNER:-}
log_fallback=${EXTRA200_LOG_FALLBACK:-$home_dir/logs}
restart_delay=${EXTRA200_RESTART_DELAY:-10}
max_delay=${EXTRA200_RESTART_MAX_DELAY:-300}
quick_exit=${EXTRA200_QUICK_EXIT:-60}
stop_timeout=${EXTRA200_STOP_TIMEOUT:-10}

# The source name of our mounts, so that --unmount only ever removes its own.
MOUNT_SOURCE=extra200tomqtt-log
LOG_NAME=extra200tomqtt.log

say() {
    printf 'start.sh: %s\n' "$*" >&2
}

is_number() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

check_numbers() {
    for setting in "EXTRA200_RESTART_DELAY=$restart_delay" "EXTRA200_RESTART_MAX_DELAY=$max_delay" \
        "EXTRA200_QUICK_EXIT=$quick_exit" "EXTRA200_STOP_TIMEOUT=$stop_timeout"; do
        if ! is_number "${setting#*=}"; then
            say "${setting%%=*} must be a whole number of seconds, got '${setting#*=}'"
            exit 2
        fi
    done
    if [ "$restart_delay" -lt 1 ]; then restart_delay=1; fi
    if [ "$max_delay" -lt "$restart_delay" ]; then max_delay=$restart_delay; fi
}

# mount_info DIR: print "source fstype" of the (topmost) mount on DIR; fail when there is none.
mount_info() {
    [ -r /proc/mounts ] || return 1
    awk -v dir="$1" '$2 == dir { info = $1 " " $3 } END { if (info != "") print info; exit info == "" }' /proc/mounts
}

# mount_ramdisk DIR: mount (or reuse) the ramdisk; sets ramdisk_dir, or why_not on failure.
mount_ramdisk() {
    ramdisk_dir=
    if [ "$(uname -s)" != Linux ]; then
        why_not="tmpfs needs Linux, this is $(uname -s)"
        return 1
    fi
    if ! mkdir -p "$1" 2>/dev/null; then
        why_not="cannot create $1"
        return 1
    fi
    # /proc/mounts lists canonical paths.
    dir=$(cd "$1" && pwd -P) || {
        why_not="cannot enter $1"
        return 1
    }
    # Already mounted (by ExecStartPre=+ or an earlier run)?  Under systemd's
    # ProtectSystem= the log directory is also bind-mounted onto itself, so a
    # mount there counts only if it is in RAM.
    case $(mount_info "$dir") in
        *" tmpfs" | *" ramfs")
            ramdisk_dir=$dir
            return 0
            ;;
    esac
    options="size=$ramdisk_size,mode=0750,nosuid,nodev,noexec"
    if [ -n "$log_owner" ] && [ "$(id -u)" = 0 ]; then
        if ! uid=$(id -u "$log_owner" 2>/dev/null) || ! gid=$(id -g "$log_owner" 2>/dev/null); then
            why_not="EXTRA200_LOG_OWNER: no user '$log_owner'"
            return 1
        fi
        options="$options,uid=$uid,gid=$gid"
    fi
    if output=$(mount -t tmpfs -o "$options" "$MOUNT_SOURCE" "$dir" 2>&1); then
        say "mounted a $ramdisk_size tmpfs ramdisk on $dir"
        ramdisk_dir=$dir
        return 0
    fi
    why_not=$(printf '%s\n' "$output" | sed -n '1p')
    why_not=${why_not:-mount failed}
    return 1
}

# choose_log_file: set EXTRA200_LOG_FILE for the daemon (or leave it unset: stderr only).
choose_log_file() {
    if [ -n "${EXTRA200_LOG_FILE:-}" ]; then
        say "log file $EXTRA200_LOG_FILE (from EXTRA200_LOG_FILE; no ramdisk)"
        export EXTRA200_LOG_FILE
        return
    fi
    unset EXTRA200_LOG_FILE
    if [ -z "$ramdisk" ]; then
        say "no ramdisk (EXTRA200_RAMDISK is empty): the daemon logs to standard error only"
        return
    fi
    log_dir=
    if mount_ramdisk "$ramdisk"; then
        if [ -w "$ramdisk_dir" ]; then
            log_dir=$ramdisk_dir
        else
            why_not="$ramdisk_dir is mounted but not writable for $(id -un)"
        fi
    fi
    if [ -z "$log_dir" ]; then
        # The one message about the ramdisk; restarts do not repeat it.
        say "cannot mount the log ramdisk on $ramdisk ($why_not); logging to disk in $log_fallback instead"
        if mkdir -p "$log_fallback" 2>/dev/null && [ -w "$log_fallback" ]; then
            log_dir=$log_fallback
        else
            say "cannot write $log_fallback either: the daemon logs to standard error only"
            return
        fi
    fi
    EXTRA200_LOG_FILE=$log_dir/$LOG_NAME
    export EXTRA200_LOG_FILE
    say "log file $EXTRA200_LOG_FILE"
}

unmount_ramdisk() {
    [ -n "$ramdisk" ] && [ -d "$ramdisk" ] || return 0
    dir=$(cd "$ramdisk" && pwd -P) || return 0
    if [ "$(mount_info "$dir")" = "$MOUNT_SOURCE tmpfs" ]; then
        umount "$dir" && say "unmounted the log ramdisk on $dir"
    fi
}

# run_daemon ARGS...: start the daemon in the background with start.sh's arguments.
run_daemon() {
    if [ -n "${EXTRA200_DAEMON_CMD:-}" ]; then
        sh -c "exec $EXTRA200_DAEMON_CMD \"\$@\"" extra200tomqtt "$@" &
    else
        "$daemon_python" "$home_dir/extra200tomqtt.py" "$@" &
    fi
}

# --- stopping -------------------------------------------------------------

stopping=0
got_signal=0
child=
sleeper=
killer=

# shellcheck disable=SC2317  # called from the traps below
on_signal() {
    got_signal=1
    if [ "$stopping" -eq 0 ]; then
        say "received SIG$1: stopping the daemon"
    fi
    stopping=1
    # SIGTERM whatever the signal was: a background job of a non-interactive
    # shell starts with SIGINT ignored, so a forwarded SIGINT could be lost.
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
    fi
    if [ -n "$sleeper" ]; then
        kill "$sleeper" 2>/dev/null
    fi
}

trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_signal HUP' HUP

# start_killer: SIGKILL the daemon if it is still running after stop_timeout seconds.
start_killer() {
    victim=$child
    (
        trap - TERM INT HUP
        sleep "$stop_timeout" >/dev/null 2>&1 &
        timer=$!
        trap 'kill "$timer" 2>/dev/null; exit 0' TERM
        if wait "$timer" && kill -0 "$victim" 2>/dev/null; then
            say "the daemon did not stop within $stop_timeout s: killing it"
            kill -KILL "$victim" 2>/dev/null
        fi
    ) </dev/null >/dev/null &
    killer=$!
}

# wait_daemon: wait for the daemon to exit and set status to its exit status.
wait_daemon() {
    status=
    while :; do
        got_signal=0
        wait "$child"
        rc=$?
        # A signal that arrived just after the daemon was collected: keep its status.
        if [ "$rc" -eq 127 ] && [ -n "$status" ]; then
            break
        fi
        status=$rc
        # Otherwise wait returned early because a trapped signal arrived.
        [ "$got_signal" -eq 1 ] || break
        if [ "$stopping" -eq 1 ] && [ -z "$killer" ]; then
            start_killer
        fi
    done
    if [ -n "$killer" ]; then
        kill -TERM "$killer" 2>/dev/null
        wait "$killer" 2>/dev/null
        killer=
    fi
    child=
}

# pause SECONDS: sleep, returning at once when a stop signal arrives.
pause() {
    sleep "$1" >/dev/null 2>&1 &
    sleeper=$!
    if [ "$stopping" -eq 0 ]; then
        wait "$sleeper" 2>/dev/null
    fi
    kill "$sleeper" 2>/dev/null
    wait "$sleeper" 2>/dev/null
    sleeper=
}

describe_status() {
    if [ "$1" -gt 128 ]; then
        echo "was killed by signal $(($1 - 128))"
    else
        echo "exited with code $1"
    fi
}

# next_delay STATUS RAN_SECONDS: set delay (and quick_exits) for the next restart.
next_delay() {
    if [ "$1" -eq 2 ]; then
        # A configuration error: restarting will not fix it soon.
        delay=$max_delay
        note=" (configuration error: fix config.yaml; see the message above)"
        return
    fi
    note=
    if [ "$2" -ge "$quick_exit" ]; then
        quick_exits=0
        delay=$restart_delay
        return
    fi
    quick_exits=$((quick_exits + 1))
    delay=$restart_delay
    n=1
    while [ "$n" -lt "$quick_exits" ] && [ "$delay" -lt "$max_delay" ]; do
        delay=$((delay * 2))
        n=$((n + 1))
    done
    if [ "$delay" -gt "$max_delay" ]; then
        delay=$max_delay
    fi
    note=" (quick exit $quick_exits in a row)"
}

supervise() {
    check_numbers
    choose_log_file
    if [ -d "$home_dir/lib" ]; then
        # Venus OS: dependencies installed by install.sh with pip --target.
        PYTHONPATH=$home_dir/lib${PYTHONPATH:+:$PYTHONPATH}
        export PYTHONPATH
    fi
    daemon_python=${EXTRA200_PYTHON:-}
    if [ -z "$daemon_python" ]; then
        if [ -x "$home_dir/venv/bin/python3" ]; then
            daemon_python=$home_dir/venv/bin/python3
        else
            daemon_python=python3
        fi
    fi
    if [ -n "${EXTRA200_DAEMON_CMD:-}" ]; then
        say "daemon command: $EXTRA200_DAEMON_CMD${*:+ $*}"
    else
        say "daemon command: $daemon_python $home_dir/extra200tomqtt.py${*:+ $*}"
    fi
    # The daemon asks the kernel for SIGTERM if this script dies (svc -k): no orphan on the port.
    EXTRA200_SUPERVISED=1
    export EXTRA200_SUPERVISED
    quick_exits=0
    while [ "$stopping" -eq 0 ]; do
        started=$(date +%s)
        run_daemon "$@"
        child=$!
        say "daemon started (pid $child)"
        # A signal that came before child was set has not been forwarded yet.
        if [ "$stopping" -eq 1 ]; then
            kill -TERM "$child" 2>/dev/null
        fi
        wait_daemon
        ran=$(($(date +%s) - started))
        if [ "$stopping" -eq 1 ]; then
            say "daemon $(describe_status "$status") after $ran s"
            break
        fi
        next_delay "$status" "$ran"
        say "daemon $(describe_status "$status") after $ran s; restarting in $delay s$note"
        pause "$delay"
    done
    say "stopped"
    exit 0
}

case ${1:-} in
    --mount-only)
        if [ -z "$ramdisk" ]; then
            say "EXTRA200_RAMDISK is empty: nothing to mount"
        elif mount_ramdisk "$ramdisk"; then
            say "log ramdisk ready on $ramdisk_dir"
        else
            # Not fatal: the supervisor falls back to EXTRA200_LOG_FALLBACK.
            say "cannot mount the log ramdisk on $ramdisk ($why_not)"
        fi
        exit 0
        ;;
    --unmount)
        unmount_ramdisk
        exit 0
        ;;
    *)
        supervise "$@"
        ;;
esac
