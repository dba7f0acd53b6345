#!/usr/bin/env bash
# OMFLOW Booster installer: installs a Booster or a Booster Agent (with its app server) from an
# extracted release package (Booster_<ver>/ or BoosterAgent_<ver>/). Re-running it upgrades in
# place. Every question can be answered by a flag or an environment variable (see --help).
set -euo pipefail
umask 022
# useradd, runuser and friends live in sbin, which some root shells (su, sudo -E) lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PKG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MIN_NODE_MAJOR=20
MIN_NODE_MINOR=6

usage() {
  cat <<'EOF'
Usage: ./install.sh [options]

Installs this package (a Booster, or a Booster Agent with its app server). Without
--non-interactive it asks for every setting, offering the given or current value as default.

Package and target
  --type booster|agent          package type (default: this package's type)      OMFLOW_INSTALL_TYPE
  --prefix DIR                  install everything under DIR, without root, no systemd  (DESTDIR)
  --non-interactive, -y         never ask; use flags, environment and defaults
  --node PATH                   Node.js binary (default: the package's runtime/bin/node, or
                                node on PATH in a package without one)            OMFLOW_NODE
  --start | --no-start          start the service after installing (default: start with systemd,
                                not with --prefix); a start fails unless the service answers
  --enable | --no-enable        start the service at boot (default: enable; an upgrade keeps the
                                current setting)
  --skip-migrate                do not run database migrations

Boosters (both types; for a Booster, the first is this Booster itself)
  --booster-ip HOST             this Booster's / the Booster's IP or domain       BOOSTER_IP
  --booster-port PORT           its port (default 5169)                            BOOSTER_PORT
  --second-booster-ip HOST      the HA Booster's IP or domain (empty: none)        SECOND_BOOSTER_IP
  --second-booster-port PORT    its port (default 5169)                            SECOND_BOOSTER_PORT
  --listen ADDR                 address the services listen on (default 0.0.0.0)   OMFLOW_LISTEN_HOST

HTTPS (Booster packages; the key must match the certificate, checked before anything is written)
  --tls-cert FILE               PEM certificate, chain allowed (empty: plain HTTP)  OMFLOW_BOOSTER_TLS_CERT_FILE
  --tls-key FILE                its PEM private key                                OMFLOW_BOOSTER_TLS_KEY_FILE

Virtual IP (Booster packages; both Boosters of a pair get the same; '-' removes it)
  --vip ADDR/PREFIX             the address users open, owned by the active Booster  OMFLOW_BOOSTER_VIP
  --vip-interface IF            the interface on the users' network                OMFLOW_BOOSTER_VIP_INTERFACE

Agent and app server (agent packages)
  --server-ip HOST              IP or domain at which the Boosters reach this host  OMFLOW_SERVER_IP
  --agent-port PORT             agent control port (default 5169)                  OMFLOW_AGENT_PORT
  --server-port PORT            app server port (default 8000)                     OMFLOW_SERVER_PORT
  --admin-user NAME             create/update this admin user after installing     OMFLOW_ADMIN_USER
  --admin-password PW           its password (nothing is created without it)       OMFLOW_ADMIN_PASSWORD
  --demo                        also seed the demo form and flow

Database (PostgreSQL, MySQL/MariaDB, SQL Server or Oracle; SQLite is refused)
  --db-url URL                  full URL, e.g. postgres://user:pw@host:5432/omflow  OMFLOW_DB_URL
  --db-type TYPE                postgresql | mysql | sqlserver | oracle           OMFLOW_DB_TYPE
  --db-host HOST  --db-port PORT  --db-name NAME  --db-user USER  --db-password PW
                                                          OMFLOW_DB_HOST/_PORT/_NAME/_USER/_PASSWORD

Cluster
  --cluster-secret SECRET       shared by every Booster and agent (>= 16 chars); a Booster
                                install generates one when empty                   OMFLOW_CLUSTER_SECRET
  --node-id ID                  this node's id (default: host name + role)        OMFLOW_NODE_ID
EOF
}

die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------- answers (flags > environment)
TYPE=${OMFLOW_INSTALL_TYPE:-}
PREFIX=${DESTDIR:-}
INTERACTIVE=1
NODE=${OMFLOW_NODE:-}
START=""
ENABLE=""
SKIP_MIGRATE=0
BOOSTER_IP=${BOOSTER_IP:-}
BOOSTER_PORT=${BOOSTER_PORT:-}
SECOND_BOOSTER_IP=${SECOND_BOOSTER_IP:-}
SECOND_BOOSTER_PORT=${SECOND_BOOSTER_PORT:-}
LISTEN=${OMFLOW_LISTEN_HOST:-}
TLS_CERT=${OMFLOW_BOOSTER_TLS_CERT_FILE:-}
TLS_KEY=${OMFLOW_BOOSTER_TLS_KEY_FILE:-}
VIP=${OMFLOW_BOOSTER_VIP:-}
VIP_IFACE=${OMFLOW_BOOSTER_VIP_INTERFACE:-}
SERVER_IP=${OMFLOW_SERVER_IP:-}
AGENT_PORT=${OMFLOW_AGENT_PORT:-}
SERVER_PORT=${OMFLOW_SERVER_PORT:-}
ADMIN_USER=${OMFLOW_ADMIN_USER:-admin}
ADMIN_PASSWORD=${OMFLOW_ADMIN_PASSWORD:-}
DEMO=0
GENERATED_SECRET=0
DB_URL=${OMFLOW_DB_URL:-}
DB_TYPE=${OMFLOW_DB_TYPE:-}
DB_HOST=${OMFLOW_DB_HOST:-}
DB_PORT=${OMFLOW_DB_PORT:-}
DB_NAME=${OMFLOW_DB_NAME:-}
DB_USER=${OMFLOW_DB_USER:-}
DB_PASSWORD=${OMFLOW_DB_PASSWORD:-}
CLUSTER_SECRET=${OMFLOW_CLUSTER_SECRET:-}
NODE_ID=${OMFLOW_NODE_ID:-}

need_value() { [ "$#" -ge 2 ] || die "option $1 needs a value"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --type) need_value "$@"; TYPE=$2; shift ;;
    --prefix) need_value "$@"; PREFIX=$2; shift ;;
    --non-interactive|-y|--yes) INTERACTIVE=0 ;;
    --node) need_value "$@"; NODE=$2; shift ;;
    --start) START=1 ;;
    --no-start) START=0 ;;
    --enable) ENABLE=1 ;;
    --no-enable) ENABLE=0 ;;
    --skip-migrate) SKIP_MIGRATE=1 ;;
    --booster-ip|--host) need_value "$@"; BOOSTER_IP=$2; shift ;;
    --booster-port|--port) need_value "$@"; BOOSTER_PORT=$2; shift ;;
    --second-booster-ip|--ha-host) need_value "$@"; SECOND_BOOSTER_IP=$2; shift ;;
    --second-booster-port|--ha-port) need_value "$@"; SECOND_BOOSTER_PORT=$2; shift ;;
    --listen) need_value "$@"; LISTEN=$2; shift ;;
    --tls-cert) need_value "$@"; TLS_CERT=$2; shift ;;
    --tls-key) need_value "$@"; TLS_KEY=$2; shift ;;
    --vip) need_value "$@"; VIP=$2; shift ;;
    --vip-interface) need_value "$@"; VIP_IFACE=$2; shift ;;
    --server-ip) need_value "$@"; SERVER_IP=$2; shift ;;
    --agent-port) need_value "$@"; AGENT_PORT=$2; shift ;;
    --server-port) need_value "$@"; SERVER_PORT=$2; shift ;;
    --admin-user) need_value "$@"; ADMIN_USER=$2; shift ;;
    --admin-password) need_value "$@"; ADMIN_PASSWORD=$2; shift ;;
    --demo) DEMO=1 ;;
    --db-url) need_value "$@"; DB_URL=$2; shift ;;
    --db-type) need_value "$@"; DB_TYPE=$2; shift ;;
    --db-host) need_value "$@"; DB_HOST=$2; shift ;;
    --db-port) need_value "$@"; DB_PORT=$2; shift ;;
    --db-name) need_value "$@"; DB_NAME=$2; shift ;;
    --db-user) need_value "$@"; DB_USER=$2; shift ;;
    --db-password) need_value "$@"; DB_PASSWORD=$2; shift ;;
    --cluster-secret) need_value "$@"; CLUSTER_SECRET=$2; shift ;;
    --node-id) need_value "$@"; NODE_ID=$2; shift ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

# ---------------------------------------------------------------- the package
[ -f "$PKG_DIR/PACKAGE" ] || die "$PKG_DIR is not an extracted OMFLOW Booster package (no PACKAGE file)"
PKG_TYPE=$(sed -n 's/^TYPE=//p' "$PKG_DIR/PACKAGE")
VERSION=$(sed -n 's/^VERSION=//p' "$PKG_DIR/PACKAGE")
[ -n "$TYPE" ] || TYPE=$PKG_TYPE
case "$TYPE" in
  booster|agent) ;;
  *) die "--type must be booster or agent, not '$TYPE'" ;;
esac
[ "$TYPE" = "$PKG_TYPE" ] || die "this is a $PKG_TYPE package; it cannot install a $TYPE"

if [ -f "$PKG_DIR/SHA256SUMS" ]; then
  say "Verifying the package checksums ..."
  (cd "$PKG_DIR" && sha256sum --quiet --strict -c SHA256SUMS) || die "the package is damaged: checksums do not match (download it again)"
fi

# ---------------------------------------------------------------- layout
if [ -n "$PREFIX" ]; then
  mkdir -p "$PREFIX"
  PREFIX=$(cd "$PREFIX" && pwd)
  ROOT_MODE=0
else
  [ "$(id -u)" -eq 0 ] || die "run as root, or install under a directory with --prefix DIR"
  ROOT_MODE=1
fi
if [ "$TYPE" = booster ]; then
  HOME_DIR="$PREFIX/opt/omflow/Booster"; UNIT=omflow-booster; CONF_NAME=booster.env
  SERVICE_SCRIPT=omflow_booster_service; COMMAND=booster; ROLE_TITLE="Booster"
else
  HOME_DIR="$PREFIX/opt/omflow/BoosterAgent"; UNIT=omflow-booster-agent; CONF_NAME=agent.env
  SERVICE_SCRIPT=omflow_booster_agent_service; COMMAND=agent; ROLE_TITLE="Booster Agent"
fi
CONF_DIR="$PREFIX/etc/omflow"
CONF_FILE="$CONF_DIR/$CONF_NAME"
DATA_DIR="$PREFIX/var/lib/omflow/$TYPE"
LOG_DIR="$PREFIX/var/log/omflow"
UNIT_DIR="$PREFIX/etc/systemd/system"
SERVICE_USER=omflow
[ "$ROOT_MODE" -eq 1 ] || SERVICE_USER=""
if [ "$ROOT_MODE" -eq 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then USE_SYSTEMD=1; else USE_SYSTEMD=0; fi
[ -n "$START" ] || START=$USE_SYSTEMD
# At boot: as asked; an upgrade keeps what the operator chose with systemctl; a fresh install enables.
if [ -z "$ENABLE" ]; then
  ENABLE=1
  if [ "$USE_SYSTEMD" -eq 1 ] && [ -f "$UNIT_DIR/$UNIT.service" ] && ! systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then ENABLE=0; fi
fi

# ---------------------------------------------------------------- current configuration (upgrade)
UPGRADE=0
declare -A CURRENT=()
if [ -f "$CONF_FILE" ]; then
  UPGRADE=1
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    key=${line%%=*}; value=${line#*=}
    if [[ "$value" == \"*\" ]]; then
      value=${value:1:${#value}-2}
      value=$(printf '%s' "$value" | sed -e 's/\\\([\\"$`]\)/\1/g')
    fi
    CURRENT[$key]=$value
  done <"$CONF_FILE"
fi
current() { printf '%s' "${CURRENT[$1]:-}"; }
[ -n "$BOOSTER_IP" ] || BOOSTER_IP=$(current BOOSTER_IP)
[ -n "$BOOSTER_PORT" ] || BOOSTER_PORT=$(current BOOSTER_PORT)
[ -n "$SECOND_BOOSTER_IP" ] || SECOND_BOOSTER_IP=$(current SECOND_BOOSTER_IP)
[ -n "$SECOND_BOOSTER_PORT" ] || SECOND_BOOSTER_PORT=$(current SECOND_BOOSTER_PORT)
[ -n "$CLUSTER_SECRET" ] || CLUSTER_SECRET=$(current OMFLOW_CLUSTER_SECRET)
[ -n "$NODE_ID" ] || NODE_ID=$(current OMFLOW_NODE_ID)
[ -n "$SERVER_IP" ] || SERVER_IP=$(current OMFLOW_SERVER_IP)
[ -n "$TLS_CERT" ] || TLS_CERT=$(current OMFLOW_BOOSTER_TLS_CERT_FILE)
[ -n "$TLS_KEY" ] || TLS_KEY=$(current OMFLOW_BOOSTER_TLS_KEY_FILE)
[ -n "$VIP" ] || VIP=$(current OMFLOW_BOOSTER_VIP)
[ -n "$VIP_IFACE" ] || VIP_IFACE=$(current OMFLOW_BOOSTER_VIP_INTERFACE)
[ "$VIP" != "-" ] || { VIP=""; VIP_IFACE=""; }
[ -n "$AGENT_PORT" ] || AGENT_PORT=$(current OMFLOW_AGENT_PORT)
[ -n "$SERVER_PORT" ] || SERVER_PORT=$(current OMFLOW_SERVER_PORT)
if [ -z "$LISTEN" ]; then
  if [ "$TYPE" = booster ]; then LISTEN=$(current OMFLOW_BOOSTER_HOST); else LISTEN=$(current OMFLOW_AGENT_HOST); fi
fi
KEEP_DB=0
if [ -z "$DB_URL" ] && [ -z "$DB_TYPE$DB_HOST$DB_PASSWORD" ] && [ -n "$(current OMFLOW_DB_URL)" ]; then
  DB_URL=$(current OMFLOW_DB_URL); KEEP_DB=1
fi

# ---------------------------------------------------------------- questions
default_ip() {
  local ip
  ip=$(hostname -I 2>/dev/null | awk '{print $1}') || true
  printf '%s' "${ip:-127.0.0.1}"
}

# ask VAR "question" default — interactive: asks, the default shown in brackets; otherwise keeps
# the value (or takes the default).
ask() {
  local var=$1 question=$2 dflt=${3:-} cur answer
  cur=${!var}
  [ -n "$cur" ] || cur=$dflt
  if [ "$INTERACTIVE" -eq 1 ]; then
    printf '%s [%s]: ' "$question" "$cur" >&2
    IFS= read -r answer || die "no answer to \"$question\" (stdin closed); use --non-interactive with flags"
    [ -n "$answer" ] || answer=$cur
    [ "$answer" != "-" ] || answer=""
  else
    answer=$cur
  fi
  printf -v "$var" '%s' "$answer"
}

ask_secret() {
  local var=$1 question=$2 answer shown=""
  [ -z "${!var}" ] || shown="keep current"
  if [ "$INTERACTIVE" -eq 1 ]; then
    printf '%s [%s]: ' "$question" "$shown" >&2
    if [ -t 0 ]; then IFS= read -r -s answer || die "no answer to \"$question\""; printf '\n' >&2
    else IFS= read -r answer || die "no answer to \"$question\" (stdin closed); use --non-interactive with flags"; fi
    [ -z "$answer" ] || printf -v "$var" '%s' "$answer"
  fi
}

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
valid_host() { [[ "$1" =~ ^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$ ]]; }

ask_port() {
  local var=$1 question=$2 dflt=$3
  while :; do
    ask "$var" "$question" "$dflt"
    valid_port "${!var}" && return 0
    [ "$INTERACTIVE" -eq 1 ] || die "$question: '${!var}' is not a port (1-65535)"
    say "  Please enter a port number from 1 to 65535." >&2
    printf -v "$var" '%s' ""
  done
}

ask_host() {
  local var=$1 question=$2 dflt=$3 optional=${4:-0}
  while :; do
    ask "$var" "$question" "$dflt"
    if [ -z "${!var}" ] && [ "$optional" -eq 1 ]; then return 0; fi
    valid_host "${!var}" && return 0
    [ "$INTERACTIVE" -eq 1 ] || die "$question: '${!var}' is not an IP address or domain name"
    say "  Please enter an IP address or a domain name." >&2
    printf -v "$var" '%s' ""
  done
}

[ "$INTERACTIVE" -eq 0 ] || say "OMFLOW $ROLE_TITLE $VERSION installer$([ "$UPGRADE" -eq 1 ] && printf ' (upgrading the existing installation)'). Press Enter to accept [defaults]; '-' clears a value."

if [ "$TYPE" = booster ]; then
  ask_host BOOSTER_IP "This Booster's IP address or domain name" "$(default_ip)"
  ask_port BOOSTER_PORT "This Booster's port" 5169
  ask_host SECOND_BOOSTER_IP "HA Booster's IP address or domain name (empty: no HA Booster)" "" 1
  if [ -n "$SECOND_BOOSTER_IP" ]; then ask_port SECOND_BOOSTER_PORT "HA Booster's port" 5169; else SECOND_BOOSTER_PORT=""; fi
  ask TLS_CERT "TLS certificate file for HTTPS (PEM, chain allowed; empty: plain HTTP)" ""
  if [ -n "$TLS_CERT" ]; then ask TLS_KEY "TLS private key file" ""; else TLS_KEY=""; fi
else
  ask_host BOOSTER_IP "Booster's IP address or domain name" ""
  ask_port BOOSTER_PORT "Booster's port" 5169
  ask_host SECOND_BOOSTER_IP "HA Booster's IP address or domain name (empty: no HA Booster)" "" 1
  if [ -n "$SECOND_BOOSTER_IP" ]; then ask_port SECOND_BOOSTER_PORT "HA Booster's port" 5169; else SECOND_BOOSTER_PORT=""; fi
  ask_host SERVER_IP "This host's IP address or domain name (as the Boosters reach it)" "$(default_ip)"
  ask_port AGENT_PORT "Agent port" 5169
  ask_port SERVER_PORT "App server port" 8000
fi
[ -n "$LISTEN" ] || LISTEN=0.0.0.0

# Database
db_scheme() {
  case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
    postgres|postgresql|pg) echo postgres ;;
    mysql|mariadb) echo mysql ;;
    sqlserver|mssql|"sql server") echo mssql ;;
    oracle) echo oracle ;;
    sqlite*) echo sqlite ;;
    *) echo "" ;;
  esac
}
default_db_port() {
  case "$1" in postgres) echo 5432 ;; mysql) echo 3306 ;; mssql) echo 1433 ;; oracle) echo 1521 ;; esac
}
SQLITE_REFUSED="SQLite is refused: a cluster needs one database server that every Booster and app server reaches over the network (PostgreSQL, MySQL/MariaDB, SQL Server or Oracle)"

if [ "$KEEP_DB" -eq 1 ] && [ "$INTERACTIVE" -eq 1 ]; then
  keep=""
  ask keep "Keep the database settings of the current installation? (y/n)" y
  case "$keep" in [nN]*) KEEP_DB=0; DB_URL="" ;; esac
fi
if [ -n "$DB_URL" ]; then
  case "$DB_URL" in sqlite*|file:*) die "$SQLITE_REFUSED" ;; esac
elif [ "$KEEP_DB" -eq 0 ]; then
  while :; do
    ask DB_TYPE "Database type (postgresql, mysql, sqlserver, oracle)" postgresql
    scheme=$(db_scheme "$DB_TYPE")
    if [ "$scheme" = sqlite ]; then
      [ "$INTERACTIVE" -eq 1 ] || die "$SQLITE_REFUSED"
      say "  $SQLITE_REFUSED." >&2; DB_TYPE=""; continue
    fi
    [ -n "$scheme" ] && break
    [ "$INTERACTIVE" -eq 1 ] || die "unknown database type '$DB_TYPE' (postgresql, mysql, sqlserver or oracle)"
    say "  Please answer postgresql, mysql, sqlserver or oracle." >&2; DB_TYPE=""
  done
  ask_host DB_HOST "Database host" 127.0.0.1
  ask_port DB_PORT "Database port" "$(default_db_port "$scheme")"
  ask DB_NAME "Database name$([ "$scheme" = oracle ] && printf ' (service name)')" omflow
  ask DB_USER "Database user" omflow
  ask_secret DB_PASSWORD "Database password"
  [ -n "$DB_PASSWORD" ] || die "a database password is required (--db-password or OMFLOW_DB_PASSWORD)"
  if [ -z "$DB_NAME" ] || [ -z "$DB_USER" ]; then die "database name and user are required"; fi
fi

# Cluster secret
if [ "$TYPE" = booster ]; then
  ask_secret CLUSTER_SECRET "Cluster secret, shared by every Booster and agent (empty: generate one)"
  GENERATED_SECRET=0
  if [ -z "$CLUSTER_SECRET" ]; then
    CLUSTER_SECRET=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n'); GENERATED_SECRET=1
  fi
else
  ask_secret CLUSTER_SECRET "Cluster secret (OMFLOW_CLUSTER_SECRET in the Booster's /etc/omflow/booster.env)"
  [ -n "$CLUSTER_SECRET" ] || die "the cluster secret is required (--cluster-secret or OMFLOW_CLUSTER_SECRET): copy it from the Booster's /etc/omflow/booster.env"
fi
[ "${#CLUSTER_SECRET}" -ge 16 ] || die "the cluster secret must be at least 16 characters"
[ -n "$NODE_ID" ] || NODE_ID="$(hostname -s 2>/dev/null || hostname)-$TYPE"
[[ "$NODE_ID" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "node id '$NODE_ID' may only hold letters, digits, . _ - (at most 64)"

# ---------------------------------------------------------------- checks
# The package's own runtime unless --node says otherwise; it is copied to $HOME_DIR/runtime.
BUNDLED_NODE=0
if [ -z "$NODE" ] && [ -x "$PKG_DIR/runtime/bin/node" ]; then NODE="$PKG_DIR/runtime/bin/node"; BUNDLED_NODE=1; fi
[ -n "$NODE" ] || NODE=$(command -v node || true)
if [ -z "$NODE" ] || [ ! -x "$NODE" ]; then die "Node.js not found: install Node.js >= $MIN_NODE_MAJOR.$MIN_NODE_MINOR or give --node PATH"; fi
NODE_VERSION=$("$NODE" -p 'process.versions.node') || die "$NODE does not run on this host (package for $(sed -n 's/^ARCH=//p' "$PKG_DIR/PACKAGE"), this host is $(uname -m))"
IFS=. read -r node_major node_minor _ <<<"$NODE_VERSION"
if [ "$node_major" -lt "$MIN_NODE_MAJOR" ] || { [ "$node_major" -eq "$MIN_NODE_MAJOR" ] && [ "$node_minor" -lt "$MIN_NODE_MINOR" ]; }; then
  die "Node.js $NODE_VERSION is too old: $MIN_NODE_MAJOR.$MIN_NODE_MINOR or newer is needed"
fi
NODE=$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE")

# HTTPS: both files, absolute paths, readable, and a key that belongs to the certificate.
if [ "$TYPE" = booster ] && [ -n "$TLS_CERT$TLS_KEY" ]; then
  if [ -z "$TLS_CERT" ] || [ -z "$TLS_KEY" ]; then die "HTTPS needs both a certificate (--tls-cert) and its key (--tls-key)"; fi
  for f in "$TLS_CERT" "$TLS_KEY"; do
    [[ "$f" == /* ]] || die "TLS file '$f' must be an absolute path (the service does not run in this directory)"
    [ -r "$f" ] || die "TLS file '$f' cannot be read"
  done
  set +e
  tls_out=$("$NODE" -e '
    const c = require("node:crypto"), fs = require("node:fs");
    let x, k;
    try { x = new c.X509Certificate(fs.readFileSync(process.argv[1])); } catch { console.log("the certificate file holds no PEM certificate"); process.exit(2); }
    try { k = c.createPrivateKey(fs.readFileSync(process.argv[2])); } catch { console.log("the key file holds no PEM private key"); process.exit(2); }
    if (!x.checkPrivateKey(k)) { console.log("the key does not match the certificate"); process.exit(2); }
    if (Date.parse(x.validTo) < Date.now()) { console.log("the certificate expired on " + x.validTo); process.exit(2); }
    console.log(x.subject.replace(/\n/g, ", ") + " (valid until " + x.validTo + ")");
  ' "$TLS_CERT" "$TLS_KEY"); tls_rc=$?
  set -e
  [ "$tls_rc" -eq 0 ] || die "TLS certificate $TLS_CERT with key $TLS_KEY: $tls_out"
  TLS_SHOWN="$TLS_CERT: $tls_out"
fi
if [ "$ROOT_MODE" -eq 1 ] && [ "$BUNDLED_NODE" -eq 0 ]; then
  case "$NODE" in
    /root/*|/home/*) die "Node.js at $NODE is hidden from the service (the units set ProtectHome=yes): install Node.js system-wide (e.g. /usr/bin/node or /usr/local/bin/node) or give --node" ;;
  esac
fi

# The virtual IP (Booster): the tools, the capabilities, and an address nobody else uses.
VIP_IP_BIN=""
if [ "$TYPE" = booster ] && [ -n "$VIP$VIP_IFACE" ]; then
  if [ -z "$VIP" ] || [ -z "$VIP_IFACE" ]; then die "the virtual IP needs both --vip ADDR/PREFIX and --vip-interface IF"; fi
  [[ "$VIP" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]] || die "--vip '$VIP' must be an IPv4 address with its prefix length, e.g. 10.0.0.10/24"
  VIP_IP_BIN=$(type -P ip || true)
  [ -n "$VIP_IP_BIN" ] || die "the virtual IP needs the ip command: install iproute2"
  arping_bin=$(type -P arping || true)
  [ -n "$arping_bin" ] || die "the virtual IP needs arping for its gratuitous ARP: install iputils-arping (or Debian's arping package)"
  case "$("$arping_bin" -V 2>&1; "$arping_bin" --help 2>&1)" in
    *iputils*) ARPING_FLAVOUR=iputils ;;
    *Habets*) ARPING_FLAVOUR=habets ;;
    *) die "$arping_bin is neither iputils' arping nor Thomas Habets' arping (Debian's iputils-arping or arping package)" ;;
  esac
  if [ "$ROOT_MODE" -eq 1 ]; then
    "$VIP_IP_BIN" link show dev "$VIP_IFACE" >/dev/null 2>&1 || die "--vip-interface $VIP_IFACE: no such network interface on this host"
    # CAP_NET_ADMIN (12) adds the address, CAP_NET_RAW (13) sends the ARP; the unit can only grant what this host allows.
    cap_bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
    (( (16#${cap_bnd:-0} >> 12 & 3) == 3 )) || die "this host does not allow CAP_NET_ADMIN and CAP_NET_RAW (CapBnd $cap_bnd), which the virtual IP needs: run the Booster where they are available, or use DNS or a load balancer instead"
    vip_addr=${VIP%/*}
    if ! "$VIP_IP_BIN" -o -4 addr show dev "$VIP_IFACE" | grep -q " inet $vip_addr/"; then
      if [ "$ARPING_FLAVOUR" = iputils ]; then
        # -D: duplicate address detection, exit 1 when some host answers for the address.
        vip_taken=0; "$arping_bin" -q -D -c 2 -w 3 -I "$VIP_IFACE" "$vip_addr" >/dev/null 2>&1 || vip_taken=1
      else
        vip_taken=0; "$arping_bin" -q -c 2 -w 3 -i "$VIP_IFACE" "$vip_addr" >/dev/null 2>&1 && vip_taken=1
      fi
      if [ "$vip_taken" -eq 1 ]; then
        # The other Booster of the pair may hold it; anything else answering for it is a conflict.
        # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions.
        "$NODE" -e 'fetch(`http://${process.argv[1]}:${process.argv[2]}/_booster/active`, { signal: AbortSignal.timeout(3000) }).then(async (r) => { const b = await r.json(); process.exit(b && typeof b.active === "boolean" ? 0 : 1); }, () => process.exit(1))' "$vip_addr" "$BOOSTER_PORT" ||
          die "the virtual IP $vip_addr is already in use on the network by a host that is not an OMFLOW Booster: choose a free address"
        say "The virtual IP $vip_addr is held by the other Booster of the pair."
      fi
    fi
  fi
fi

if [ -z "$DB_URL" ]; then
  # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions.
  DB_URL=$("$NODE" -e 'const [s,h,p,n,u,pw]=process.argv.slice(1); const host=h.includes(":")&&!h.startsWith("[")?`[${h}]`:h; process.stdout.write(`${s}://${encodeURIComponent(u)}:${encodeURIComponent(pw)}@${host}:${p}/${encodeURIComponent(n)}`)' \
    "$scheme" "$DB_HOST" "$DB_PORT" "$DB_NAME" "$DB_USER" "$DB_PASSWORD")
fi

BOOSTER_URL="http://$BOOSTER_IP:$BOOSTER_PORT"
SECOND_BOOSTER_URL=""
[ -z "$SECOND_BOOSTER_IP" ] || SECOND_BOOSTER_URL="http://$SECOND_BOOSTER_IP:$SECOND_BOOSTER_PORT"
SECRET_SHOWN=$([ "$TYPE" = booster ] && [ "$GENERATED_SECRET" -eq 1 ] && printf 'generated (see %s)' "$CONF_FILE" || printf 'given')

say ""
say "Installing OMFLOW $ROLE_TITLE $VERSION"
say "  Install directory:  $HOME_DIR"
say "  Configuration:      $CONF_FILE"
say "  Data:               $DATA_DIR"
if [ "$TYPE" = booster ]; then
  say "  This Booster:       $BOOSTER_URL (listening on $LISTEN:$BOOSTER_PORT)"
  say "  HA Booster:         ${SECOND_BOOSTER_URL:-none}"
  if [ -n "$TLS_CERT" ]; then say "  HTTPS:              https://$BOOSTER_IP:$BOOSTER_PORT ($TLS_SHOWN)"
  else say "  HTTPS:              none (plain HTTP; see --tls-cert)"; fi
  if [ -n "$VIP" ]; then say "  Virtual IP:         $VIP on $VIP_IFACE (arping: $ARPING_FLAVOUR)"; fi
else
  say "  Boosters:           $BOOSTER_URL${SECOND_BOOSTER_URL:+, $SECOND_BOOSTER_URL}"
  say "  Agent:              $LISTEN:$AGENT_PORT"
  say "  App server:         http://$SERVER_IP:$SERVER_PORT (listening on $LISTEN:$SERVER_PORT)"
fi
say "  Database:           ${DB_URL%%://*}://…@${DB_URL#*@}"
say "  Cluster secret:     $SECRET_SHOWN"
say "  Node id:            $NODE_ID"
say "  Node.js:            $NODE_VERSION$([ "$BUNDLED_NODE" -eq 1 ] && printf ' (bundled)' || printf ' (%s)' "$NODE")"
if [ "$INTERACTIVE" -eq 1 ]; then
  proceed=""
  ask proceed "Proceed? (y/n)" y
  case "$proceed" in [yY]*) ;; *) say "Nothing was changed."; exit 1 ;; esac
fi

APP="$PKG_DIR/app"
omflow_in_pkg() {
  env OMFLOW_DB_URL="$DB_URL" OMFLOW_CLUSTER_SECRET="$CLUSTER_SECRET" OMFLOW_LOG_LEVEL=warn OMFLOW_CONFIG= \
    "$NODE" "$APP/common/bin/omflow.mjs" "$@"
}

say "Checking the database connection ..."
set +e
db_out=$(omflow_in_pkg migrate status 2>&1); db_rc=$?
set -e
if [ "$db_rc" -ne 0 ] && [ "$db_rc" -ne 3 ]; then
  printf '%s\n' "$db_out" >&2
  die "cannot use the database (${DB_URL%%://*}://…@${DB_URL#*@}); check host, port, name, user and password"
fi

# An upgrade stops the running service first (its port is ours), then checks the ports.
WAS_RUNNING=0
if [ "$UPGRADE" -eq 1 ] && [ -x "$HOME_DIR/$SERVICE_SCRIPT" ]; then
  if "$HOME_DIR/$SERVICE_SCRIPT" status >/dev/null 2>&1; then
    WAS_RUNNING=1
    say "Stopping the running $ROLE_TITLE for the upgrade ..."
    "$HOME_DIR/$SERVICE_SCRIPT" stop
  fi
fi

port_free() {
  "$NODE" -e 'const s=require("node:net").createServer(); s.once("error",()=>process.exit(1)); s.listen(Number(process.argv[2]), process.argv[1], ()=>s.close(()=>process.exit(0)))' "$1" "$2"
}
check_port() {
  port_free "$LISTEN" "$1" || die "port $1 on $LISTEN is already in use ($2); free it or choose another port"
}
if [ "$TYPE" = booster ]; then
  check_port "$BOOSTER_PORT" "Booster"
else
  check_port "$AGENT_PORT" "agent"
  check_port "$SERVER_PORT" "app server"
  [ "$AGENT_PORT" != "$SERVER_PORT" ] || die "the agent and the app server need different ports"
fi

# ---------------------------------------------------------------- install
if [ "$ROOT_MODE" -eq 1 ] && ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  say "Creating the system user $SERVICE_USER ..."
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  useradd --system --user-group --home-dir /var/lib/omflow --no-create-home --shell "$nologin" "$SERVICE_USER"
fi

mkdir -p "$HOME_DIR" "$CONF_DIR" "$DATA_DIR" "$LOG_DIR" "$UNIT_DIR"
say "Copying files to $HOME_DIR ..."
rm -rf "$HOME_DIR/app.new" "$HOME_DIR/app.old"
cp -a "$APP" "$HOME_DIR/app.new"
[ ! -d "$HOME_DIR/app" ] || mv "$HOME_DIR/app" "$HOME_DIR/app.old"
mv "$HOME_DIR/app.new" "$HOME_DIR/app"
rm -rf "$HOME_DIR/app.old"
# The bundled runtime goes the same way; the units and scripts then run it.
rm -rf "$HOME_DIR/runtime.new"
if [ "$BUNDLED_NODE" -eq 1 ]; then
  cp -a "$PKG_DIR/runtime" "$HOME_DIR/runtime.new"
  rm -rf "$HOME_DIR/runtime"
  mv "$HOME_DIR/runtime.new" "$HOME_DIR/runtime"
  NODE="$HOME_DIR/runtime/bin/node"
else
  rm -rf "$HOME_DIR/runtime"
fi
for f in "$SERVICE_SCRIPT" service-common.sh; do install -m 0755 "$PKG_DIR/scripts/$f" "$HOME_DIR/$f"; done
install -m 0755 "$PKG_DIR/uninstall.sh" "$HOME_DIR/uninstall.sh"
install -m 0644 "$PKG_DIR/PACKAGE" "$HOME_DIR/PACKAGE"
if [ -d "$PKG_DIR/docs" ]; then rm -rf "$HOME_DIR/docs"; cp -a "$PKG_DIR/docs" "$HOME_DIR/docs"; fi

# install.conf: read by the service script and uninstall.sh.
{
  printf '# Written by install.sh; read by %s and uninstall.sh.\n' "$SERVICE_SCRIPT"
  printf 'OMFLOW_TYPE=%q\n' "$TYPE"
  printf 'OMFLOW_COMMAND=%q\n' "$COMMAND"
  printf 'OMFLOW_UNIT=%q\n' "$UNIT"
  printf 'OMFLOW_PREFIX=%q\n' "$PREFIX"
  printf 'OMFLOW_HOME=%q\n' "$HOME_DIR"
  printf 'OMFLOW_CONFIG_FILE=%q\n' "$CONF_FILE"
  printf 'OMFLOW_DATA=%q\n' "$DATA_DIR"
  printf 'OMFLOW_LOG_DIR=%q\n' "$LOG_DIR"
  printf 'OMFLOW_UNIT_FILE=%q\n' "$UNIT_DIR/$UNIT.service"
  printf 'OMFLOW_NODE=%q\n' "$NODE"
  printf 'OMFLOW_USER=%q\n' "$SERVICE_USER"
  printf 'OMFLOW_USE_SYSTEMD=%q\n' "$USE_SYSTEMD"
  printf 'OMFLOW_CHECK_HOST=%q\n' "$([ "$LISTEN" = 0.0.0.0 ] || [ "$LISTEN" = "::" ] && echo 127.0.0.1 || echo "$LISTEN")"
  printf 'OMFLOW_CHECK_PORT=%q\n' "$([ "$TYPE" = booster ] && echo "$BOOSTER_PORT" || echo "$AGENT_PORT")"
  printf 'OMFLOW_VERSION=%q\n' "$VERSION"
} >"$HOME_DIR/install.conf"

# `bin/omflow` runs any omflow command with this installation's configuration.
mkdir -p "$HOME_DIR/bin"
cat >"$HOME_DIR/bin/omflow" <<EOF
#!/bin/sh
exec "$NODE" "$HOME_DIR/app/common/bin/omflow.mjs" --config "$CONF_FILE" "\$@"
EOF
chmod 0755 "$HOME_DIR/bin/omflow"

# The environment file (systemd EnvironmentFile syntax), mode 0600: it holds secrets.
env_line() {
  local v=$2
  if [[ "$v" =~ ^[A-Za-z0-9._:/@%+=,-]*$ ]]; then printf '%s=%s\n' "$1" "$v"
  else v=${v//\\/\\\\}; v=${v//\"/\\\"}; v=${v//\$/\\\$}; v=${v//\`/\\\`}; printf '%s="%s"\n' "$1" "$v"; fi
}
tmp_conf=$(mktemp "$CONF_DIR/.${CONF_NAME}.XXXXXX")
chmod 0600 "$tmp_conf"
{
  printf '# OMFLOW %s configuration, written by install.sh %s on %s.\n' "$ROLE_TITLE" "$VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '# Reference: %s/docs/configuration.md. Re-running install.sh keeps these answers as defaults.\n' "$HOME_DIR"
  env_line OMFLOW_NODE_ID "$NODE_ID"
  env_line OMFLOW_CLUSTER_SECRET "$CLUSTER_SECRET"
  env_line OMFLOW_DATA_DIR "$DATA_DIR"
  env_line OMFLOW_DB_URL "$DB_URL"
  env_line BOOSTER_IP "$BOOSTER_IP"
  env_line BOOSTER_PORT "$BOOSTER_PORT"
  env_line SECOND_BOOSTER_IP "$SECOND_BOOSTER_IP"
  env_line SECOND_BOOSTER_PORT "$SECOND_BOOSTER_PORT"
  if [ "$TYPE" = booster ]; then
    env_line OMFLOW_BOOSTER_HOST "$LISTEN"
    env_line OMFLOW_BOOSTER_PORT "$BOOSTER_PORT"
    env_line OMFLOW_BOOSTER_ADVERTISE_URL "$BOOSTER_URL"
    env_line OMFLOW_BOOSTER_PEER_URL "$SECOND_BOOSTER_URL"
    env_line OMFLOW_BOOSTER_TLS_CERT_FILE "$TLS_CERT"
    env_line OMFLOW_BOOSTER_TLS_KEY_FILE "$TLS_KEY"
    env_line OMFLOW_BOOSTER_VIP "$VIP"
    env_line OMFLOW_BOOSTER_VIP_INTERFACE "$VIP_IFACE"
  else
    env_line OMFLOW_SERVER_IP "$SERVER_IP"
    env_line OMFLOW_AGENT_HOST "$LISTEN"
    env_line OMFLOW_AGENT_PORT "$AGENT_PORT"
    env_line OMFLOW_AGENT_URL "http://$SERVER_IP:$AGENT_PORT"
    env_line OMFLOW_SERVER_HOST "$LISTEN"
    env_line OMFLOW_SERVER_PORT "$SERVER_PORT"
    env_line OMFLOW_SERVER_URL "http://$SERVER_IP:$SERVER_PORT"
  fi
  # Settings the operator added by hand survive an upgrade.
  for key in "${!CURRENT[@]}"; do
    case "$key" in
      OMFLOW_NODE_ID|OMFLOW_CLUSTER_SECRET|OMFLOW_DATA_DIR|OMFLOW_DB_URL|BOOSTER_IP|BOOSTER_PORT|SECOND_BOOSTER_IP|SECOND_BOOSTER_PORT) ;;
      OMFLOW_BOOSTER_HOST|OMFLOW_BOOSTER_PORT|OMFLOW_BOOSTER_ADVERTISE_URL|OMFLOW_BOOSTER_PEER_URL|OMFLOW_BOOSTER_TLS_CERT_FILE|OMFLOW_BOOSTER_TLS_KEY_FILE) ;;
      OMFLOW_BOOSTER_VIP|OMFLOW_BOOSTER_VIP_INTERFACE) ;;
      OMFLOW_SERVER_IP|OMFLOW_AGENT_HOST|OMFLOW_AGENT_PORT|OMFLOW_AGENT_URL|OMFLOW_SERVER_HOST|OMFLOW_SERVER_PORT|OMFLOW_SERVER_URL) ;;
      *) env_line "$key" "${CURRENT[$key]}" ;;
    esac
  done
} >"$tmp_conf"
mv -f "$tmp_conf" "$CONF_FILE"

# The systemd unit, rendered for this layout (installed and enabled when systemd runs).
# Type=notify needs perl for sd_notify (docs/adr/0016); without it the unit is Type=exec, unwatched.
unit_edits=()
if ! perl -MSocket -e 1 >/dev/null 2>&1; then
  say "Note: perl is missing, so systemd is told the service is up when it starts (Type=exec), not when it answers, and no watchdog runs."
  unit_edits+=(-e 's/^Type=notify$/Type=exec/' -e '/^NotifyAccess=/d' -e '/^WatchdogSec=/d')
fi
KILL_BIN=$(type -P kill || true)
if [ -n "$KILL_BIN" ]; then unit_edits+=(-e "s|@KILL@|$KILL_BIN|g"); else unit_edits+=(-e '/^ExecReload=/d'); fi
sed -e "s|@NODE@|$NODE|g" -e "s|@HOME@|$HOME_DIR|g" -e "s|@CONFIG@|$CONF_FILE|g" \
    -e "s|@DATA@|$DATA_DIR|g" -e "s|@LOGDIR@|$LOG_DIR|g" -e "s|@VARLIB@|$PREFIX/var/lib/omflow|g" \
    -e "s|@USER@|${SERVICE_USER:-$(id -un)}|g" -e "s|@GROUP@|${SERVICE_USER:-$(id -gn)}|g" \
    "${unit_edits[@]}" "$PKG_DIR/systemd/$UNIT.service.in" >"$UNIT_DIR/$UNIT.service"
chmod 0644 "$UNIT_DIR/$UNIT.service"

# The virtual IP's drop-in: the two capabilities it needs, and a dead Booster's copy of the address
# removed before a restart. Replaced or removed on every install; a drop-in of your own goes elsewhere.
VIP_DROPIN="$UNIT_DIR/$UNIT.service.d/vip.conf"
if [ -n "$VIP_IP_BIN" ]; then
  mkdir -p "$(dirname "$VIP_DROPIN")"
  cat >"$VIP_DROPIN" <<EOF
# Written by install.sh for OMFLOW_BOOSTER_VIP (install.sh --vip); re-running it replaces this file.
[Service]
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW
RestrictAddressFamilies=AF_NETLINK AF_PACKET
# After a crash or kill -9 the address is still on the interface: remove it before a restart.
ExecStopPost=-$VIP_IP_BIN -4 addr del \${OMFLOW_BOOSTER_VIP} dev \${OMFLOW_BOOSTER_VIP_INTERFACE}
EOF
  chmod 0644 "$VIP_DROPIN"
elif [ -f "$VIP_DROPIN" ] && grep -q '^# Written by install.sh' "$VIP_DROPIN"; then
  rm -f "$VIP_DROPIN"
  rmdir "$(dirname "$VIP_DROPIN")" 2>/dev/null || true
fi

if [ "$ROOT_MODE" -eq 1 ]; then
  chown -R "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR" "$LOG_DIR"
  chown "$SERVICE_USER:$SERVICE_USER" "$CONF_FILE"
  chmod 0755 "$CONF_DIR"
fi

if [ "$SKIP_MIGRATE" -eq 0 ]; then
  say "Migrating the database ..."
  "$HOME_DIR/bin/omflow" migrate latest
fi

if [ "$TYPE" = agent ] && [ -n "$ADMIN_PASSWORD" ]; then
  say "Creating the admin user '$ADMIN_USER' ..."
  seed_args=(server seed --admin-user "$ADMIN_USER" --admin-password "$ADMIN_PASSWORD")
  [ "$DEMO" -eq 0 ] || seed_args+=(--demo)
  "$HOME_DIR/bin/omflow" "${seed_args[@]}"
fi

if [ "$USE_SYSTEMD" -eq 1 ]; then
  systemctl daemon-reload
  if [ "$ENABLE" = 0 ]; then systemctl disable "$UNIT" >/dev/null 2>&1 || true
  else systemctl enable "$UNIT" >/dev/null 2>&1; fi
fi
# The same check the unit runs before every start: a configuration that cannot work stops here.
say "Checking the configuration (omflow config check) ..."
"$HOME_DIR/bin/omflow" config check --quiet --role "$TYPE" || die "the configuration in $CONF_FILE does not pass omflow config check (see above); fix it, then run install.sh again"

if [ "$START" = 1 ] || [ "$WAS_RUNNING" -eq 1 ]; then
  # The script waits until the service answers, and shows its last log lines when it does not.
  "$HOME_DIR/$SERVICE_SCRIPT" start || die "OMFLOW $ROLE_TITLE $VERSION is installed, but the service did not start (see above); fix the cause, then run $HOME_DIR/$SERVICE_SCRIPT start"
fi

say ""
say "OMFLOW $ROLE_TITLE $VERSION is installed$([ "$UPGRADE" -eq 1 ] && printf ' (upgraded)')."
say "  Start / stop / status:  $HOME_DIR/$SERVICE_SCRIPT {start|stop|status}"
[ "$USE_SYSTEMD" -eq 0 ] || say "  At boot:                $([ "$ENABLE" = 0 ] && printf 'not started (systemctl enable %s to change)' "$UNIT" || printf 'started (%s is enabled)' "$UNIT")"
say "  Configuration:          $CONF_FILE"
if [ "$TYPE" = booster ]; then
  [ "$GENERATED_SECRET" -eq 0 ] || say "  Cluster secret:         generated; give the same OMFLOW_CLUSTER_SECRET (in $CONF_FILE) to the HA Booster and every agent"
  say "  Start order:            database, then the Boosters, then the agents"
else
  say "  Admin pages:            $BOOSTER_URL/admin (through the Booster)"
fi
