#!/usr/bin/env bash
# cni-logger end to end on a fresh Debian (bookworm) machine, as root:
#
#   sudo bash scripts/demo.sh
#
# Installs what the demo runs and nothing else (scripts/setup-demo.sh: the reference CNI plugins, cnitool,
# a virtualenv with the project), creates a throw-away "host" and container network namespace, writes a
# bridge + host-local + logger network into a temp dir, runs cnitool ADD, CHECK and DEL, then asks the audit
# trail with the CLI, each command printed as you would type it: `cni-logger events` (this run's three
# events), `cni-logger who-had` (the address the container just had) and `cni-logger report --html` (the
# page's path is printed). Everything it made is removed on exit (also on failure or Ctrl-C) except the audit
# log and the report page.
#
# Environment: LOG_FILE (default /var/log/cni/demo.log), REPORT_FILE (default demo-report.html beside it),
# SKIP_SETUP=1 to skip scripts/setup-demo.sh; CNI_LOGGER_TOOLS, CNI_LOGGER_VENV as for the set-up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${CNI_LOGGER_TOOLS:-/opt/cni-logger-tools}
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
LOGGER=${CNI_LOGGER_BIN:-$VENV/bin/cni-logger}
CLI=$VENV/bin/cni-logger                  # the audit commands (CNI_LOGGER_BIN may replace only the plugin)
LOG_FILE=${LOG_FILE:-/var/log/cni/demo.log}
REPORT_FILE=${REPORT_FILE:-$(dirname "$LOG_FILE")/demo-report.html}
CNITOOL=$TOOLS/bin/cnitool

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
say() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: sudo bash scripts/demo.sh"

# --- names unique to this run; only what this run created is ever removed ------------------------------
ID="demo-$$"
HOST_NS="cnil-$ID-host"
CTR_NS="cnil-$ID-ctr"
NET="cnil-$(date -u +%y%m%d-%H%M%S)"    # unique in the kept log, also when a fresh container reuses the pid
BRIDGE="cnld$$"                        # <= 15 characters
SUBNET="10.250.$(( $$ % 200 + 20 )).0/24" # exists only inside the throw-away namespaces
W=""
CREATED_NS=()

cleanup() {
  local rc=$? ns
  trap - EXIT INT TERM
  set +e
  if [ ${#CREATED_NS[@]} -gt 0 ]; then
    ip -n "$HOST_NS" link del "$BRIDGE" 2>/dev/null
    for ns in "${CREATED_NS[@]}"; do ip netns del "$ns"; done
  fi
  rm -f /var/lib/cni/results/"$NET"-*   # cnitool's result cache for this run's network
  [ -n "$W" ] && rm -rf -- "$W"           # config, plugin dir, host-local dataDir, captured output
  if [ "$rc" != 0 ]; then
    printf 'demo: failed (rc=%s); cleaned up namespaces, cache entries and temp files\n' "$rc" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. install / reuse ----------------------------------------------------------------------------------
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  say "setup (scripts/setup-demo.sh; reuses what is already installed)"
  bash "$ROOT/scripts/setup-demo.sh"
fi
[ -x "$CNITOOL" ] || die "$CNITOOL missing (scripts/setup-demo.sh builds it)"
[ -x "$LOGGER" ] || die "$LOGGER missing (scripts/setup-demo.sh installs it)"
[ -x "$CLI" ] || die "$CLI missing (scripts/setup-demo.sh installs it)"

# --- 2. throw-away namespaces, plugin dir and network config --------------------------------------------
W=$(mktemp -d "/tmp/cnil-$ID.XXXXXX")
mkdir -p "$W/cni-bin" "$W/net.d" "$(dirname "$LOG_FILE")"
for p in /usr/lib/cni/*; do ln -s "$p" "$W/cni-bin/"; done
if [ "$(basename "$LOGGER")" = cni-logger ]; then
  "$LOGGER" launcher "$W/cni-bin/logger" 2>/dev/null      # what an operator installs into /opt/cni/bin
else
  ln -s "$LOGGER" "$W/cni-bin/logger"
fi
for ns in "$HOST_NS" "$CTR_NS"; do ip netns add "$ns"; CREATED_NS+=("$ns"); done
ip -n "$HOST_NS" link set lo up

cat > "$W/net.d/$NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]], "dataDir": "$W/ipam"}
    },
    {"type": "logger", "logFile": "$LOG_FILE", "logToStderr": false}
  ]
}
EOF
say "network $NET ($W/net.d/$NET.conflist)"
cat "$W/net.d/$NET.conflist"

# --- 3. ADD, CHECK, DEL through cnitool, run inside the throw-away host namespace ------------------------
cni() {
  local cmd=$1
  if ! ip netns exec "$HOST_NS" env NETCONFPATH="$W/net.d" CNI_PATH="$W/cni-bin" \
       CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web-0" \
       "$CNITOOL" "$cmd" "$NET" "/run/netns/$CTR_NS" >"$W/$cmd.out" 2>"$W/$cmd.err"; then
    cat "$W/$cmd.out" "$W/$cmd.err" >&2
    die "cnitool $cmd failed"
  fi
}
say "cnitool add $NET /run/netns/$CTR_NS"
cni add
addr=$(ip -n "$CTR_NS" -4 -o addr show dev eth0 | awk '{print $4; exit}')
[ -n "$addr" ] || die "no IPv4 address on eth0 in $CTR_NS after ADD"
IP=${addr%/*}
printf 'inside the container: eth0 %s\n' "$addr"
say "cnitool check"
cni check
say "cnitool del"
cni del

# --- 4. the audit trail, asked with the CLI ---------------------------------------------------------------
# Each command is printed as a reader would type it (with the virtualenv's bin on PATH) and run with $CLI.
show() {
  local line rc=0
  printf -v line ' %q' "$@"
  printf '\n%s$ cni-logger%s%s\n' "$BOLD" "$line" "$PLAIN"
  "$CLI" "$@" || rc=$?
  return "$rc"
}
say "the audit trail, asked with cni-logger ($CLI; or: . $VENV/bin/activate)"
show events --log-file "$LOG_FILE" --network "$NET" || die "cni-logger events found no events of $NET"
count=$("$CLI" events --log-file "$LOG_FILE" --network "$NET" --format json | wc -l)
[ "$count" = 3 ] || die "expected 3 events (ADD, CHECK, DEL) of $NET in $LOG_FILE, found $count"
show who-had "$IP" --log-file "$LOG_FILE" || die "cni-logger who-had $IP found no holder"
show report --log-file "$LOG_FILE" --html "$REPORT_FILE" || die "cni-logger report failed"
printf '\nthe report page: %s\n' "$REPORT_FILE"

say "kept"
printf 'audit log: %s (this run: network %s); report page: %s\n' "$LOG_FILE" "$NET" "$REPORT_FILE"
printf 'cleaning up on exit: namespaces %s, %s; bridge %s; %s; /var/lib/cni/results/%s-*\n' \
  "$HOST_NS" "$CTR_NS" "$BRIDGE" "$W" "$NET"
