#!/bin/bash
# A real Home Assistant for the screenshots and the Home Assistant test, kept out of the project.
#
# Home Assistant 2025+ needs Python 3.13 or newer, which Debian 12 does not have, so this builds a
# small Debian 13 (trixie) tree with debootstrap and installs Home Assistant from PyPI into a
# virtual environment inside it. Everything lives in one cache directory outside the clone
# (EXTRA200_HA_DIR, default /var/cache/extra200tomqtt-homeassistant) and is reused: a second
# `install` only checks that the tree is there. Needs root (debootstrap, chroot).
#
#   scripts/homeassistant.sh install    # build or check the tree (prints how long it took)
#   scripts/homeassistant.sh path       # print the tree's root (exit 1 when not installed)
#   scripts/homeassistant.sh run WORK_DIR [HASS OPTIONS]
#                                       # hass with WORK_DIR/config; WORK_DIR is /t in the tree
#   scripts/homeassistant.sh python WORK_DIR [PYTHON ARGS]
#                                       # Home Assistant's Python (aiohttp ...), WORK_DIR at /t
#
# Settings: EXTRA200_HA_VERSION (default below), EXTRA200_HA_SUITE (default trixie).
set -euo pipefail

HA_DIR="${EXTRA200_HA_DIR:-/var/cache/extra200tomqtt-homeassistant}"
HA_VERSION="${EXTRA200_HA_VERSION:-2026.2.3}"
SUITE="${EXTRA200_HA_SUITE:-trixie}"
ROOT="$HA_DIR/$SUITE-$HA_VERSION"
VENV=/opt/homeassistant           # inside the tree
# The integrations the screenshots and the test load; their PyPI requirements are installed up
# front (read from each integration's manifest), so hass runs with --skip-pip.
# Optional speed-ups Home Assistant warns about when missing.
EXTRAS=(isal zlib-ng)
INTEGRATIONS=(frontend mqtt energy recorder history lovelace config onboarding auth api
    websocket_api http person logbook search system_log diagnostics)

log() { printf 'homeassistant.sh: %s\n' "$*" >&2; }

# The Debian mirror this machine's apt already uses (never a host name written here).
apt_mirror() {
    local uri
    uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -v -- '-security' |
        sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' |
        awk '{print $1}' | grep -E '/debian/?$' | head -n 1)
    if [ -z "$uri" ]; then
        log "no Debian mirror found in /etc/apt/sources.list*"
        return 1
    fi
    printf '%s\n' "$uri"
}

in_tree() {
    # Runs a command in the tree with /proc, /dev and /sys mounted in a private mount namespace,
    # so nothing stays mounted when it exits, however it exits.
    # With IN_TREE_EXEC=1 the shell becomes the command (run, python: the caller's $! is hass's pid).
    local exec_=
    [ "${IN_TREE_EXEC:-}" = 1 ] && exec_="exec"
    # shellcheck disable=SC2016  # the inner script expands its own arguments
    $exec_ unshare --mount --propagation private -- /bin/sh -ec '
        root=$1; shift
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"
        if [ -n "${EXTRA200_HA_BIND:-}" ]; then
            mkdir -p "$root/t"
            mount --bind "$EXTRA200_HA_BIND" "$root/t"
        fi
        exec chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
            TZ="${TZ:-UTC}" PIP_DISABLE_PIP_VERSION_CHECK=1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
            UV_NATIVE_TLS=1 "$@"' in_tree "$ROOT" "$@"
}

install_tree() {
    local started mirror
    started=$(date +%s)
    if [ -x "$ROOT$VENV/bin/hass" ] && [ -f "$ROOT/.complete-3" ]; then
        log "Home Assistant $HA_VERSION ready in $ROOT"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        log "must run as root (debootstrap, chroot)"
        return 1
    fi
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; return 1; }
    mirror=$(apt_mirror)
    mkdir -p "$HA_DIR"
    if [ ! -f "$ROOT/.debootstrapped" ]; then
        rm -rf "$ROOT"
        log "debootstrap $SUITE from $mirror into $ROOT"
        # A compiler and headers: a few of Home Assistant's pinned packages have no wheel for every Python.
        debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
            "$SUITE" "$ROOT" "$mirror" >"$HA_DIR/debootstrap.log" 2>&1 ||
            { log "debootstrap failed, see $HA_DIR/debootstrap.log"; tail -n 20 "$HA_DIR/debootstrap.log" >&2; return 1; }
        touch "$ROOT/.debootstrapped"
    fi
    # The host's certificate bundle (it may hold a proxy's CA) and resolver, for pip in the tree.
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    log "installing homeassistant==$HA_VERSION"
    [ -x "$ROOT$VENV/bin/pip" ] || in_tree python3 -m venv "$VENV"
    in_tree "$VENV/bin/pip" install -q "homeassistant==$HA_VERSION"
    # The requirements of the integrations we load, pinned by Home Assistant's own manifests.
    in_tree "$VENV/bin/python" - "${INTEGRATIONS[@]}" >"$ROOT/tmp/requirements.txt" <<'EOF'
import importlib, json, pathlib, pkgutil, sys
import homeassistant.components as components
import homeassistant.auth.mfa_modules as mfa
base = pathlib.Path(components.__path__[0])
todo = list(sys.argv[1:])
seen, requirements = set(), set()
for module in pkgutil.iter_modules(mfa.__path__):  # the login's MFA modules (pyotp, PyQRCode)
    requirements.update(getattr(importlib.import_module(mfa.__name__ + "." + module.name), "REQUIREMENTS", []))
while todo:
    name = todo.pop()
    if name in seen or not (base / name / "manifest.json").exists():
        continue
    seen.add(name)
    manifest = json.loads((base / name / "manifest.json").read_text())
    requirements.update(manifest.get("requirements", []))
    todo.extend(manifest.get("dependencies", []) + manifest.get("after_dependencies", []))
print("\n".join(sorted(requirements)))
EOF
    in_tree "$VENV/bin/pip" install -q -r /tmp/requirements.txt "${EXTRAS[@]}"
    touch "$ROOT/.complete-3"
    log "Home Assistant $HA_VERSION installed in $ROOT in $(($(date +%s) - started)) s"
}

work_dir() {
    [ -f "$ROOT/.complete-3" ] || { log "not installed: run $0 install"; exit 1; }
    cd "${1:?a work directory}" && pwd
}

case "${1:-}" in
install) install_tree ;;
path)
    [ -f "$ROOT/.complete-3" ] || exit 1
    printf '%s\n' "$ROOT"
    ;;
run)
    work=$(work_dir "${2:-}")
    shift 2
    IN_TREE_EXEC=1 EXTRA200_HA_BIND="$work" in_tree "$VENV/bin/hass" --config /t/config "$@"
    ;;
python)
    work=$(work_dir "${2:-}")
    shift 2
    IN_TREE_EXEC=1 EXTRA200_HA_BIND="$work" in_tree "$VENV/bin/python" "$@"
    ;;
*)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
