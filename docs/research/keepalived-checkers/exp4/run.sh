#!/usr/bin/env bash
# exp4 (exp2 variant): silent real server (nft drops all input in its namespace) -- detection times
# exp2: detection times (TCP_CHECK / HTTP_GET, retry 1 and 2, listener killed or host silent),
# the delay_before_retry-vs-delay_loop question, and UDP_CHECK / DNS_CHECK / MISC_CHECK on UDP.
#   cp -r docs/research/keepalived-checkers/exp4 /tmp/exp4 && python3 tests/vm/vm.py /tmp/exp4 900
set -uo pipefail
. "$LVSGEN_REPO/docs/research/keepalived-checkers/common.sh"
F=$OUT/fifo.log; : > "$F"
ROUNDS=${ROUNDS:-5}
topo 1 2 4
ip netns add lvs-shadow; ip -n lvs-shadow link set lo up
mkdir -p /usr/local/sbin; cp /test/udp-probe.sh /usr/local/sbin/; chmod 755 /usr/local/sbin/udp-probe.sh
declare -A PID LISTEN
# start KEY (ns:port:kind); records PID and the time the socket was bound
start() {
  local ns=${1%%:*} rest=${1#*:}; local port=${rest%%:*} kind=${rest#*:}; local log=$OUT/srv-$ns-$port.log
  local n; n=$(nlines "$log")
  if [[ $kind == udp ]]; then
    ip netns exec "$ns" $PY /test/udpsrv.py "$port" > >(tslog >> "$log") 2>&1 &
  else
    ip netns exec "$ns" $PY "$LVSGEN_GUESTLIB/vmhttp.py" serve 0.0.0.0 "$port" "$ns" > >(tslog >> "$log") 2>&1 &
  fi
  PID[$1]=$!
}
started() { local ns=${1%%:*} rest=${1#*:}; local port=${rest%%:*}; local l
  l=$(wait_line "$OUT/srv-$ns-$port.log" "${2:-0}" 'serving' 30) || { echo "NO START $1"; return 1; }
  LISTEN[$1]=${l%% *}; }
addr() { case ${1%%:*} in rs1) echo 192.0.2.21;; rs2) echo 192.0.2.22;; rs4) echo 192.0.2.24;; esac; }
re() { local rest=${1#*:}; local port=${rest%%:*} kind=${rest#*:} p=tcp; [[ $kind == udp ]] && p=udp
  echo "RS \[$(addr "$1")\]:$p:$port .*$2\$"; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
# round LABEL MODE(kill|silent) KEY...: take the services down together, time DOWN, bring back, time UP
round() {
  local label=$1 mode=$2; shift 2; local k n t0 l ns nn=()
  n=$(nlines "$F"); t0=$(now)
  if [[ $mode == kill ]]; then for k in "$@"; do kill -9 "${PID[$k]}"; done
  else for ns in $(printf '%s\n' "$@" | cut -d: -f1 | sort -u); do
      ip netns exec "$ns" nft 'add table inet bh { chain cin { type filter hook input priority 0; policy drop; }; }' || echo "nft FAILED"; done; fi
  for k in "$@"; do
    if l=$(wait_line "$F" "$n" "$(re "$k" DOWN)" 25); then echo "TRIAL $label $mode $k DOWN $(dt "$t0" "${l%% *}")"
    else echo "TRIAL $label $mode $k DOWN none(>25s)"; fi
  done
  sleep 1
  n=$(nlines "$F")
  if [[ $mode == kill ]]; then
    for k in "$@"; do nn[${#nn[@]}]=$(nlines "$OUT/srv-${k%%:*}-$(cut -d: -f2 <<<"$k").log"); start "$k"; done
    local i=0; for k in "$@"; do started "$k" "${nn[$i]}"; i=$((i+1)); done
  else
    t0=$(now); for ns in $(printf '%s\n' "$@" | cut -d: -f1 | sort -u); do ip netns exec "$ns" nft delete table inet bh; done
    for k in "$@"; do LISTEN[$k]=$t0; done
  fi
  for k in "$@"; do
    if l=$(wait_line "$F" "$n" "$(re "$k" UP)" 25); then echo "TRIAL $label $mode $k UP $(dt "${LISTEN[$k]}" "${l%% *}")"
    else echo "TRIAL $label $mode $k UP none(>25s)"; fi
  done
  sleep 1
}
ALL="rs1:80:tcp rs1:81:tcp rs1:82:tcp rs2:80:http rs2:81:http rs2:82:http rs4:53:udp rs4:54:udp rs4:55:udp rs4:56:udp"
for k in $ALL; do start "$k"; done
for k in $ALL; do started "$k"; done
echo "servers up"
reader_start /run/lvsgen/t.fifo "$F"   # keepalived creates the fifo? the reader re-opens until it exists
mkfifo /run/lvsgen/t.fifo
ka_start /test/ka-t.conf T
sleep 8
echo "--- startup lines:"; cat "$F"; shadow start
modprobe nf_tables
echo "=== silent host (nft drop all input in the real server's namespace)"
for r in 1 2 3; do round "silent$r" silent rs1:80:tcp rs1:81:tcp rs2:80:http rs2:81:http rs4:54:udp rs4:55:udp rs4:56:udp; done
for r in 1 2; do round "udpsilent$r" silent rs4:53:udp; done
shadow end
kill -TERM $KA_PARENT; wait $KA_PARENT
shadow stopped
reader_stop
echo "=== fifo.log"; cat "$F"
echo "=== ka log (checker lines)"; grep -v -i "^[0-9.]* *$" "$OUT/ka-T.log" | tail -n 400
