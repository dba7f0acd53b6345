#!/usr/bin/env bash
# Removes an OMFLOW Booster or Booster Agent installation. Configuration and data are kept
# unless --purge (then the configuration, data, logs and — when nothing else uses it — the
# omflow user go too). The database is never touched.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: uninstall.sh [--type booster|agent] [--prefix DIR] [--purge] [--non-interactive]

Run /opt/omflow/Booster/uninstall.sh or /opt/omflow/BoosterAgent/uninstall.sh; from a
package directory, say which installation with --type (and --prefix if installed with one).
  --purge             also remove /etc/omflow/<type>.env, /var/lib/omflow/<type> and the logs
  --non-interactive   do not ask for confirmation (-y)
USAGE
}

die() { printf 'uninstall.sh: error: %s\n' "$*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TYPE=""
PREFIX=${DESTDIR:-}
PURGE=0
INTERACTIVE=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --type) [ "$#" -ge 2 ] || die "--type needs a value"; TYPE=$2; shift ;;
    --prefix) [ "$#" -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift ;;
    --purge) PURGE=1 ;;
    --non-interactive|-y|--yes) INTERACTIVE=0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

if [ -f "$HERE/install.conf" ] && [ -z "$TYPE" ]; then
  CONF="$HERE/install.conf"
else
  [ -n "$TYPE" ] || { [ -f "$HERE/PACKAGE" ] && TYPE=$(sed -n 's/^TYPE=//p' "$HERE/PACKAGE"); } || true
  case "$TYPE" in
    booster) CONF="$PREFIX/opt/omflow/Booster/install.conf" ;;
    agent) CONF="$PREFIX/opt/omflow/BoosterAgent/install.conf" ;;
    *) die "say which installation to remove: --type booster or --type agent" ;;
  esac
fi
[ -f "$CONF" ] || die "no installation found ($CONF is missing)"
# shellcheck source=/dev/null
. "$CONF"
if [ -z "$OMFLOW_PREFIX" ] && [ "$(id -u)" -ne 0 ]; then die "run as root"; fi

if [ "$INTERACTIVE" -eq 1 ]; then
  printf 'Remove %s from %s%s? [y/N]: ' "$OMFLOW_UNIT" "$OMFLOW_HOME" "$([ "$PURGE" -eq 1 ] && printf ' and PURGE its configuration and data')" >&2
  IFS= read -r answer || answer=""
  case "$answer" in [yY]*) ;; *) echo "Nothing was changed."; exit 1 ;; esac
fi

SERVICE_SCRIPT="$OMFLOW_HOME/omflow_booster_service"
[ "$OMFLOW_TYPE" = booster ] || SERVICE_SCRIPT="$OMFLOW_HOME/omflow_booster_agent_service"
if [ -x "$SERVICE_SCRIPT" ]; then "$SERVICE_SCRIPT" stop || true; fi

if [ "$OMFLOW_USE_SYSTEMD" = 1 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable "$OMFLOW_UNIT" >/dev/null 2>&1 || true
fi
rm -f "$OMFLOW_UNIT_FILE"
# The drop-ins install.sh wrote (the virtual IP's); others of your own are left.
rm -f "$OMFLOW_UNIT_FILE.d/vip.conf"
rmdir "$OMFLOW_UNIT_FILE.d" 2>/dev/null || true
if [ "$OMFLOW_USE_SYSTEMD" = 1 ] && command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload || true; fi

rm -rf "$OMFLOW_HOME"
echo "Removed $OMFLOW_HOME and the $OMFLOW_UNIT unit."

if [ "$PURGE" -eq 1 ]; then
  rm -f "$OMFLOW_CONFIG_FILE" "$OMFLOW_LOG_DIR/$OMFLOW_UNIT.log"
  rm -rf "$OMFLOW_DATA"
  rmdir "$(dirname "$OMFLOW_CONFIG_FILE")" "$OMFLOW_LOG_DIR" "$(dirname "$OMFLOW_DATA")" 2>/dev/null || true
  echo "Purged $OMFLOW_CONFIG_FILE and $OMFLOW_DATA."
  # The user goes with the last installation of this host.
  if [ -z "$OMFLOW_PREFIX" ] && [ -n "$OMFLOW_USER" ] && [ ! -d /opt/omflow/Booster ] && [ ! -d /opt/omflow/BoosterAgent ] && id -u "$OMFLOW_USER" >/dev/null 2>&1; then
    userdel "$OMFLOW_USER" 2>/dev/null || true
  fi
  rmdir "$(dirname "$OMFLOW_HOME")" 2>/dev/null || true
else
  echo "Kept the configuration ($OMFLOW_CONFIG_FILE) and data ($OMFLOW_DATA); --purge removes them."
fi
