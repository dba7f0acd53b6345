# shellcheck shell=bash
# Shared body of omflow_booster_service and omflow_booster_agent_service: start | stop | status |
# restart with LSB exit codes (status: 0 running, 1 dead with a pid file, 3 stopped). Uses
# systemctl where systemd runs the host; manages a pid file otherwise (containers, --prefix).

omflow_service_main() {
  local here=$1 action=${2:-}
  # shellcheck source=/dev/null
  . "$here/install.conf" || { echo "cannot read $here/install.conf" >&2; return 4; }
  PID_FILE="$OMFLOW_DATA/$OMFLOW_UNIT.pid"
  LOG_FILE="$OMFLOW_LOG_DIR/$OMFLOW_UNIT.log"
  START_TIMEOUT=${OMFLOW_START_TIMEOUT:-60}
  STOP_TIMEOUT=${OMFLOW_STOP_TIMEOUT:-30}
  case "$action" in
    start) svc_start ;;
    stop) svc_stop ;;
    status) svc_status ;;
    restart) svc_stop && svc_start ;;
    *) echo "Usage: $(basename "$0") {start|stop|status|restart}" >&2; return 2 ;;
  esac
}

use_systemctl() {
  [ "$OMFLOW_USE_SYSTEMD" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# The pid in the pid file, if that process is alive and is ours (pids get reused).
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "omflow.mjs" || return 1
  printf '%s' "$pid"
}

port_answers() {
  (exec 3<>"/dev/tcp/$OMFLOW_CHECK_HOST/$OMFLOW_CHECK_PORT") 2>/dev/null
}

# The unit's last log lines, for a start or status that went wrong.
show_journal() {
  echo "last lines of the $OMFLOW_UNIT journal (journalctl -u $OMFLOW_UNIT):" >&2
  journalctl -u "$OMFLOW_UNIT" -n "${1:-25}" --no-pager -o cat >&2 2>/dev/null || true
}

# systemd's view of the unit: ActiveState/SubState, e.g. active/running, activating/auto-restart.
unit_state() {
  systemctl show -p ActiveState -p SubState "$OMFLOW_UNIT" 2>/dev/null | sed -n 's/^ActiveState=//p; s/^SubState=//p' | paste -sd/ -
}

# Under systemd: `systemctl start` returns once the unit is ready (Type=notify: the port listens and
# the role is known); the port is checked too, as a unit rendered without perl is Type=exec.
systemd_start() {
  local since i state
  since=$(date '+%Y-%m-%d %H:%M:%S')
  if ! systemctl start "$OMFLOW_UNIT"; then
    echo "$OMFLOW_UNIT failed to start ($(unit_state))" >&2
    journalctl -u "$OMFLOW_UNIT" --since "$since" -n 25 --no-pager -o cat >&2 2>/dev/null || show_journal
    return 1
  fi
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    state=$(unit_state)
    case "$state" in
      active/*) if port_answers; then echo "$OMFLOW_UNIT started"; return 0; fi ;;
      *) echo "$OMFLOW_UNIT failed after it started ($state)" >&2; show_journal; return 1 ;;
    esac
    sleep 0.25
  done
  echo "$OMFLOW_UNIT runs but does not answer on $OMFLOW_CHECK_HOST:$OMFLOW_CHECK_PORT after ${START_TIMEOUT}s" >&2
  show_journal
  return 1
}

svc_start() {
  if use_systemctl; then systemd_start; return; fi
  local pid
  if pid=$(running_pid); then echo "$OMFLOW_UNIT is already running (pid $pid)"; return 0; fi
  mkdir -p "$OMFLOW_DATA" "$OMFLOW_LOG_DIR"
  local -a cmd=("$OMFLOW_NODE" "$OMFLOW_HOME/app/common/bin/omflow.mjs" --config "$OMFLOW_CONFIG_FILE" "$OMFLOW_COMMAND")
  if [ "$(id -u)" -eq 0 ] && [ -n "$OMFLOW_USER" ] && id -u "$OMFLOW_USER" >/dev/null 2>&1; then
    # Same account as under systemd; setpriv execs, so the pid stays the service's.
    cmd=(setpriv "--reuid=$OMFLOW_USER" "--regid=$OMFLOW_USER" --init-groups "${cmd[@]}")
    chown "$OMFLOW_USER:" "$OMFLOW_LOG_DIR" "$OMFLOW_DATA" 2>/dev/null || true
  fi
  # Its own session and process group: stop reaches the app server the agent started as well.
  (cd "$OMFLOW_DATA" && exec setsid "${cmd[@]}" >>"$LOG_FILE" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local i
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      echo "$OMFLOW_UNIT failed to start; last lines of $LOG_FILE:" >&2
      tail -n 20 "$LOG_FILE" >&2
      return 1
    fi
    if port_answers; then echo "$OMFLOW_UNIT started (pid $pid)"; return 0; fi
    sleep 0.25
  done
  echo "$OMFLOW_UNIT started (pid $pid) but does not answer on $OMFLOW_CHECK_HOST:$OMFLOW_CHECK_PORT after ${START_TIMEOUT}s; last lines of $LOG_FILE:" >&2
  tail -n 20 "$LOG_FILE" >&2
  return 1
}

svc_stop() {
  if use_systemctl; then
    systemctl stop "$OMFLOW_UNIT" || return 1
    echo "$OMFLOW_UNIT stopped"
    return 0
  fi
  local pid
  if ! pid=$(running_pid); then
    # The leader died (kill -9, crash) but its group may live on: the agent's app server. A pid
    # that is still some process group's id cannot have been reused, so this reaches only ours.
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    local left=0
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 -- "-$pid" 2>/dev/null; then
      echo "$OMFLOW_UNIT died; stopping what is left of its process group $pid"
      stop_group "$pid"; left=1
    fi
    # An agent that died leaves its app server running (in its own group) for the next agent
    # to adopt; stop means nothing runs, so it goes too. (systemd does this by cgroup.)
    local server
    server=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$OMFLOW_DATA/server.pid" 2>/dev/null || true)
    if [[ "$server" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$server/cmdline" 2>/dev/null | grep -q "omflow.mjs"; then
      echo "stopping the app server (pid $server) its agent left behind"
      stop_group "$server"; left=1
    fi
    [ "$left" -eq 1 ] || echo "$OMFLOW_UNIT is not running"
    rm -f "$PID_FILE"
    return 0
  fi
  stop_group "$pid"
  rm -f "$PID_FILE"
  echo "$OMFLOW_UNIT stopped"
  return 0
}

stop_group() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 4; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    echo "$OMFLOW_UNIT did not stop within ${STOP_TIMEOUT}s: killing it" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done
  fi
}

svc_status() {
  if use_systemctl; then
    local state
    state=$(unit_state)
    case "$state" in
      active/*|reloading/*) echo "$OMFLOW_UNIT is running"; return 0 ;;
      # Crash-looping or given up: not running, and not stopped by anyone either.
      activating/auto-restart|failed/*) echo "$OMFLOW_UNIT is not running: it failed ($state)"; show_journal 10; return 1 ;;
      activating/*) echo "$OMFLOW_UNIT is starting"; return 3 ;;
      *) echo "$OMFLOW_UNIT is stopped"; return 3 ;;
    esac
  fi
  local pid
  if pid=$(running_pid); then echo "$OMFLOW_UNIT is running (pid $pid)"; return 0; fi
  if [ -f "$PID_FILE" ]; then echo "$OMFLOW_UNIT is dead but its pid file exists ($PID_FILE)"; return 1; fi
  echo "$OMFLOW_UNIT is stopped"
  return 3
}
