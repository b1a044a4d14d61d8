#!/usr/bin/env bash
# cni-logger end to end on a fresh Debian (bookworm) machine, as root:
#
#   sudo bash scripts/demo.sh
#
# Installs what is needed (scripts/setup-system.sh), creates a throw-away "host" and container network
# namespace, writes a bridge + host-local + logger network into a temp dir, runs cnitool ADD, CHECK and DEL,
# then prints the audit events of this run as a table and where their JSON lines are. Everything it made is
# removed on exit (also on failure or Ctrl-C) except the audit log.
#
# Environment: LOG_FILE (default /var/log/cni/demo.log), SKIP_SETUP=1 to skip scripts/setup-system.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${CNI_LOGGER_TOOLS:-/opt/cni-logger-tools}
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
LOGGER=${CNI_LOGGER_BIN:-$VENV/bin/cni-logger}
LOG_FILE=${LOG_FILE:-/var/log/cni/demo.log}
CNITOOL=$TOOLS/bin/cnitool

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
say() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: sudo bash scripts/demo.sh"

# --- names unique to this run; only what this run created is ever removed ------------------------------
ID="demo-$$"
HOST_NS="cnil-$ID-host"
CTR_NS="cnil-$ID-ctr"
NET="cnil-$ID"
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
  say "setup (scripts/setup-system.sh; reuses what is already installed)"
  bash "$ROOT/scripts/setup-system.sh"
fi
[ -x "$CNITOOL" ] || die "$CNITOOL missing (scripts/setup-system.sh builds it)"
[ -x "$LOGGER" ] || die "$LOGGER missing (scripts/setup-system.sh installs it)"
command -v jq >/dev/null || die "jq missing (scripts/setup-system.sh installs it)"

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
jq -c '.plugins[]' "$W/net.d/$NET.conflist"

# --- 3. ADD, CHECK, DEL through cnitool, run inside the throw-away host namespace ------------------------
start=$(stat -c %s "$LOG_FILE" 2>/dev/null || echo 0)   # this run's events start here
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
jq -c . "$W/add.out"
printf 'inside the container: %s\n' "$(ip -n "$CTR_NS" -4 -o addr show dev eth0 | awk '{print $2, $4}')"
say "cnitool check"
cni check
say "cnitool del"
cni del

# --- 4. the audit events of this run ----------------------------------------------------------------------
say "audit events of this run"
fmt='%-27s  %-7s  %-28s  %-6s  %-15s  %-7s  %11s\n'
# shellcheck disable=SC2059
printf "$fmt" TIME COMMAND CONTAINER IFNAME IPS OUTCOME DURATION_MS
tail -c +"$((start + 1))" "$LOG_FILE" | jq -r --arg net "$NET" '
  select(.network.name == $net)
  | [ .["@timestamp"], .cni.command, .container.id, .cni.ifname,
      ((.related.ip // []) | if length == 0 then "-" else join(",") end),
      .event.outcome,
      (((.event.duration // 0) / 10000 | floor) / 100 | tostring) ]
  | @tsv' |
while IFS=$'\t' read -r ts cmd ctr ifname ips outcome ms; do
  # shellcheck disable=SC2059
  printf "$fmt" "$ts" "$cmd" "$ctr" "$ifname" "$ips" "$outcome" "$(printf '%.2f' "$ms")"
done
count=$(tail -c +"$((start + 1))" "$LOG_FILE" | jq -c --arg net "$NET" 'select(.network.name == $net)' | wc -l)
[ "$count" = 3 ] || die "expected 3 events (ADD, CHECK, DEL) in $LOG_FILE, found $count"

say "JSON lines"
printf '%s (this run: from byte %s, %s events; e.g. jq -c "select(.network.name==\\"%s\\")" %s)\n' \
  "$LOG_FILE" "$start" "$count" "$NET" "$LOG_FILE"
printf 'cleaning up on exit: namespaces %s, %s; bridge %s; %s; /var/lib/cni/results/%s-*\n' \
  "$HOST_NS" "$CTR_NS" "$BRIDGE" "$W" "$NET"
