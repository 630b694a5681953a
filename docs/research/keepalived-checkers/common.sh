# shellcheck shell=bash
# Shared helpers for the keepalived lab (sourced by expN/run.sh inside the VM guest).
. "$LVSGEN_GUESTLIB/lib.sh"
[[ -e /dev/fd ]] || ln -s /proc/self/fd /dev/fd   # the guest /dev lacks it (process substitution)
OUT=/test/out; rm -rf "$OUT"; mkdir -p "$OUT"
RUN=/run/ka-lab; mkdir -p "$RUN" /run/lvsgen
PY="python3 -I -S"
now() { echo "$EPOCHREALTIME"; }
tslog() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
ev() { echo "$(now) EVENT $*" | tee -a "$OUT/events.log"; }
# private keepalived instance (checker only); $1 conf, $2 tag
KA_PIDS="-p $RUN/ka.pid -c $RUN/chk.pid -r $RUN/vrrp.pid -b $RUN/bfd.pid"
ka_start() { # CONF TAG [extra args]
  local conf=$1 tag=$2; shift 2
  keepalived -C -n -l -D -f "$conf" $KA_PIDS "$@" > >(tslog >> "$OUT/ka-$tag.log") 2>&1 &
  KA_PARENT=$!
  ev "ka_start $tag pid=$KA_PARENT"
}
ka_chk() { cat "$RUN/chk.pid" 2>/dev/null; }
ka_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
# root table monitor: records every distinct `ipvsadm -S -n` of the root namespace
mon_start() {
  touch "$OUT/mon.run"
  ( last=; n=0
    while [[ -e $OUT/mon.run ]]; do
      t=$(ipvsadm -S -n 2>&1); h=$(md5sum <<< "$t" | cut -c1-12)
      if [[ $h != "$last" ]]; then n=$((n+1)); echo "$(now) root-table#$n $h" >> "$OUT/mon.log"; printf '%s\n' "$t" > "$OUT/mon-$n.txt"; last=$h; fi
      echo x >> "$OUT/mon.samples"
      sleep 0.2
    done ) &
  MON_PID=$!
}
mon_stop() { rm -f "$OUT/mon.run"; wait "$MON_PID" 2>/dev/null; }
# fifo reader with timestamps; re-opens on EOF
reader_start() { # FIFO LOG
  ( while :; do
      [[ -p $1 ]] || { sleep 0.2; continue; }
      while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done < "$1"
      printf '%s %s\n' "$EPOCHREALTIME" "<EOF>"; sleep 0.1
    done ) >> "$2" 2>&1 &
  READER_PID=$!
}
reader_stop() { kill "$READER_PID" 2>/dev/null; wait "$READER_PID" 2>/dev/null; }
# wait_line LOG FROMLINE REGEX TIMEOUT: first line after FROMLINE matching REGEX; prints it
wait_line() {
  local log=$1 from=$2 re=$3 lim=$4 l deadline=$(( ${EPOCHREALTIME/./} + $4 * 1000000 ))
  while :; do
    l=$(tail -n +"$((from+1))" "$log" 2>/dev/null | grep -m1 -E -- "$re") && { echo "$l"; return 0; }
    (( ${EPOCHREALTIME/./} >= deadline )) && return 1
    sleep 0.05
  done
}
nlines() { wc -l < "$1" 2>/dev/null || echo 0; }
# topology: bridge br0 192.0.2.1/24 in root; real servers rsN at 192.0.2.2N
topo() {
  modprobe -a ip_vs ip_vs_rr ip_vs_wlc ip_vs_wrr veth bridge
  vm_bridge br0; ip addr add 192.0.2.1/24 dev br0
  local i
  for i in "$@"; do vm_attach "rs$i" eth0 br0; ip -n "rs$i" addr add "192.0.2.2$i/24" dev eth0; ip -n "rs$i" route add default via 192.0.2.1; done
}
# TCP/HTTP listener in rsN on port P; sets SRV_PID
srv_tcp() { # N PORT
  # ip netns exec directly (not the vm_nsx function), so that $! is the listener itself
  ip netns exec "rs$1" $PY "$LVSGEN_GUESTLIB/vmhttp.py" serve 0.0.0.0 "$2" "rs$1" >> "$OUT/srv-rs$1-$2.log" 2>&1 &
  SRV_PID=$!
  vm_wait_until 30 vm_listening "rs$1" tcp "$2"
}
lvsgen_table() { # what "lvsgen" owns in the root namespace
  ipvsadm-restore <<'T'
-A -t 192.0.2.100:80 -s rr
-a -t 192.0.2.100:80 -r 192.0.2.21:80 -g -w 7
-a -t 192.0.2.100:80 -r 192.0.2.22:80 -g -w 7
-A -t 198.51.100.1:443 -s wlc
-a -t 198.51.100.1:443 -r 192.0.2.23:443 -g -w 3
-A -u 192.0.2.100:53 -s rr
-a -u 192.0.2.100:53 -r 192.0.2.24:53 -g -w 5
T
}
snap() { ipvsadm -S -n > "$OUT/root-$1.txt"; if cmp -s "$OUT/root-S0.txt" "$OUT/root-$1.txt"; then echo "root table at $1: IDENTICAL to S0"; else echo "root table at $1: DIFFERS"; diff "$OUT/root-S0.txt" "$OUT/root-$1.txt"; fi; }
shadow() { echo "--- shadow ($1):"; ip netns exec lvs-shadow ipvsadm -Ln 2>&1 | sed 's/^/    /'; }
