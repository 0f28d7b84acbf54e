#!/bin/sh
# uninstall.sh: remove what install.sh installed, and nothing else.
#
#   sudo /opt/extra200tomqtt/uninstall.sh     (systemd)
#   /data/extra200tomqtt/uninstall.sh         (Venus OS, as root)
#
# It stops and removes the service, the files install.sh wrote (it lists them
# in .install-manifest), the Python packages it installed, its rc.local line,
# udev rule and system user.  Files that install.sh did not write are left
# where they are, and so is the data the daemon keeps (energy counters,
# database spool) unless --purge is given.
#
# Options:
#   --prefix DIR     the install directory (default: this script's directory
#                    when it holds an install, else /opt/extra200tomqtt or
#                    /data/extra200tomqtt)
#   --keep-config    keep config.yaml (a later install.sh keeps using it)
#   --purge          also delete the daemon's data and log directories
#
# Staging: DESTDIR=/some/dir ./uninstall.sh works under /some/dir and prints
# the commands that act on the running system instead of running them.
#
# Plain POSIX sh (Venus OS, dash, bash); shellcheck-clean.

set -eu
set -f

NAME=extra200tomqtt
MANIFEST=.install-manifest
MOUNT_SOURCE=extra200tomqtt-log

script_dir=$(cd "$(dirname "$0")" && pwd -P)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}

prefix=
keep_config=no
purge=no
kept=

say() {
    printf '%s\n' "$*"
}

die() {
    printf 'uninstall.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^# Plain POSIX/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

R() {
    printf '%s%s' "$DESTDIR" "$1"
}

staging() {
    [ -n "$DESTDIR" ]
}

act() {
    if staging; then
        say "  (staging, not run) $*"
        return 0
    fi
    "$@"
}

# keep WHAT: note something left in place, for the summary.
keep() {
    kept="$kept
  $*"
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --prefix)
                [ $# -ge 2 ] || die "--prefix needs a value"
                prefix=$2
                shift
                ;;
            --prefix=*) prefix=${1#*=} ;;
            --keep-config) keep_config=yes ;;
            --purge) purge=yes ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
        shift
    done
}

find_prefix() {
    if [ -n "$prefix" ]; then
        return
    fi
    if [ -z "$DESTDIR" ] && [ -f "$script_dir/$MANIFEST" ]; then
        prefix=$script_dir
        return
    fi
    for candidate in /opt/$NAME /data/$NAME; do
        if [ -f "$(R "$candidate")/$MANIFEST" ]; then
            prefix=$candidate
            return
        fi
    done
    prefix=/opt/$NAME
}

# entries KIND: the fields after KIND of every manifest line of that kind, last first.
entries() {
    awk -v kind="$1" '$1 == kind { sub(/^[^ ]+ /, ""); line[++n] = $0 }
        END { for (i = n; i > 0; i--) print line[i] }' "$manifest_copy"
}

stop_systemd() {
    for unit in $(entries unit); do
        act systemctl disable --now "$unit" || say "  (systemctl could not stop $unit; going on)"
    done
}

# Venus OS: take the service out of svscan's directory, then let supervise exit.
stop_venus() {
    entries link | while read -r link target; do
        if ! staging && svok "$link" 2>/dev/null; then
            svc -d "$link" "$link/log" || true
        fi
        if [ -L "$(R "$link")" ]; then
            rm -f "$(R "$link")"
            say "Removed the service $link."
        fi
        if staging; then
            act svc -dx "$target" "$target/log"
        elif svok "$target" 2>/dev/null; then
            svc -dx "$target" "$target/log" || true
            waited=0
            while { svok "$target" || svok "$target/log"; } 2>/dev/null && [ "$waited" -lt 20 ]; do
                sleep 1
                waited=$((waited + 1))
            done
        fi
    done
}

unmount_logs() {
    for dir in $(entries logs); do
        if staging || [ ! -r /proc/mounts ]; then
            continue
        fi
        if awk -v dir="$dir" -v source="$MOUNT_SOURCE" '$2 == dir && $1 == source { found = 1 } END { exit !found }' /proc/mounts; then
            umount "$dir" && say "Unmounted the log ramdisk on $dir."
        fi
    done
}

remove_udev() {
    entries udev | while read -r rule trigger; do
        if [ -f "$(R "$rule")" ]; then
            rm -f "$(R "$rule")"
            say "Removed the udev rule $rule."
            act udevadm control --reload-rules || true
            # shellcheck disable=SC2086  # $trigger is one option
            act udevadm trigger --action=change --subsystem-match=tty $trigger || true
        fi
    done
}

remove_rc_local() {
    entries rclocal | while read -r file line; do
        path=$(R "$file")
        [ -f "$path" ] || continue
        if grep -qxF "$line" "$path"; then
            grep -vxF "$line" "$path" >"$work/rc" || true
            if [ "$(tail -n 1 "$path")" = "$line" ] && entries rclocal-noeol | grep -qxF "$file"; then
                # install.sh added a line end to the last line; take it away.
                printf '%s' "$(cat "$work/rc")" >"$work/rc.noeol"
                mv -f "$work/rc.noeol" "$work/rc"
            fi
            # Rewrite in place: the file keeps its owner and mode.
            cat "$work/rc" >"$path"
            say "Removed the $NAME line from $file."
        fi
        entries rclocal-mode | while read -r mode_file mode; do
            if [ "$mode_file" = "$file" ]; then
                chmod "$mode" "$path"
            fi
        done
        if entries rclocal-created | grep -qxF "$file" &&
            [ "$(cat "$path")" = "#!/bin/sh" ]; then
            # Created by install.sh and nothing else was added: remove it.
            rm -f "$path"
            say "Removed $file (install.sh had created it)."
        fi
    done
}

remove_files() {
    for file in $(entries file); do
        rm -f "$(R "$file")"
    done
    for tree in $(entries tree); do
        if [ -e "$(R "$tree")" ]; then
            rm -rf "$(R "$tree")"
            say "Removed $tree."
        fi
    done
    entries config | while read -r config how; do
        [ -e "$(R "$config")" ] || continue
        if [ "$how" = created ] && [ "$keep_config" = no ]; then
            rm -f "$(R "$config")"
        else
            say "Kept $config."
        fi
    done
}

remove_data() {
    for kind in state logs; do
        for dir in $(entries "$kind"); do
            [ -d "$(R "$dir")" ] || continue
            if [ "$purge" = yes ]; then
                rm -rf "$(R "$dir")"
                say "Removed $dir (--purge)."
            elif ! rmdir "$(R "$dir")" 2>/dev/null; then
                keep "$dir (the daemon's $kind; --purge removes it)"
            fi
        done
    done
}

remove_dirs() {
    for dir in $(entries dir); do
        path=$(R "$dir")
        [ -d "$path" ] || continue
        # remove_data has dealt with these.
        if entries state | grep -qxF "$dir" || entries logs | grep -qxF "$dir"; then
            continue
        fi
        # Made at run time: Python byte code, daemontools state.
        rm -rf "$path/__pycache__" "$path/supervise"
        if ! rmdir "$path" 2>/dev/null; then
            keep "$dir (holds files install.sh did not write)"
        fi
    done
}

remove_user() {
    for user in $(entries user); do
        act userdel "$user" || say "  (userdel $user failed; going on)"
    done
}

main() {
    parse_args "$@"
    find_prefix
    manifest=$(R "$prefix")/$MANIFEST
    if [ ! -f "$manifest" ]; then
        say "Nothing to remove: no $NAME install in $prefix (no $MANIFEST there)."
        exit 0
    fi
    if ! staging && [ "$(id -u)" != 0 ]; then
        die "run uninstall.sh as root"
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    manifest_copy=$work/manifest
    cp "$manifest" "$manifest_copy"
    platform=$(entries platform)
    say "Removing $NAME ($platform) from $prefix${DESTDIR:+ under $DESTDIR}."

    if [ "$platform" = systemd ]; then
        stop_systemd
    else
        stop_venus
    fi
    unmount_logs
    remove_udev
    remove_rc_local
    remove_files
    if [ -n "$(entries unit)" ]; then
        act systemctl daemon-reload
    fi
    remove_data
    rm -f "$manifest"
    remove_dirs
    remove_user
    say "$NAME is uninstalled."
    if [ -n "$kept" ]; then
        say "Left in place:$kept"
    fi
}

main "$@"
