#!/usr/bin/env bash
# exp3: does lvs_notify_fifo survive SIGHUP / checker respawn (per global_defs ordering),
# reload with a config change, burst order, and lvs_notify_fifo_script lifecycle.
#   cp -r docs/research/keepalived-checkers/exp3 /tmp/exp3 && python3 tests/vm/vm.py /tmp/exp3 900
set -uo pipefail
. "$LVSGEN_REPO/docs/research/keepalived-checkers/common.sh"
FIFO=/run/lvsgen/f.fifo
topo 1 2 3
ip netns add lvs-shadow; ip -n lvs-shadow link set lo up
srv_tcp 1 80; S1=$SRV_PID; srv_tcp 2 80; S2=$SRV_PID; srv_tcp 3 80; S3=$SRV_PID
lvsgen_table; ipvsadm -S -n > "$OUT/root-S0.txt"; mon_start
mkdir -p /usr/local/sbin; cp /test/fifo-script.sh /usr/local/sbin/; chmod 755 /usr/local/sbin/fifo-script.sh
# bounce N: kill rsN's listener, wait for its DOWN line in $F, restart, wait UP; prints result
bounce() {
  local n t0 l; n=$(nlines "$F"); t0=$(now); eval kill -9 \$S$1
  if l=$(wait_line "$F" "$n" "RS \[192.0.2.2$1\]:tcp:80 .*DOWN" 12); then echo "  $2: DOWN line after $(awk -v a=$t0 -v b=${l%% *} 'BEGIN{printf "%.2f", b-a}') s: ${l#* }"; else echo "  $2: NO DOWN line within 12 s"; fi
  grep -h "Disabling service \[192.0.2.2$1\]" "$OUT/ka-$TAG.log" | tail -1 | sed 's/^/  ka log: /'
  n=$(nlines "$F"); srv_tcp "$1" 80; eval S$1=\$SRV_PID
  if l=$(wait_line "$F" "$n" "RS \[192.0.2.2$1\]:tcp:80 .*UP" 12); then echo "  $2: UP line: ${l#* }"; else echo "  $2: NO UP line within 12 s"; fi
}
hup_case() { # CONF TAG
  TAG=$2; F=$OUT/fifo-$TAG.log; : > "$F"; echo "=== case $TAG ($1)"
  sed -n '/global_defs/,/}/p' "$1" | sed 's/^/  | /'
  reader_start $FIFO "$F"; ka_start "$1" "$TAG"; sleep 6
  echo "  startup lines: $(wc -l < "$F")"; sed 's/^/    /' "$F"
  bounce 1 "before HUP"
  ev "$TAG SIGHUP"; kill -HUP $KA_PARENT; sleep 6
  bounce 1 "after HUP"
  ev "$TAG kill -9 checker"; kill -9 "$(ka_chk)"; sleep 7
  bounce 1 "after checker respawn"
  kill -TERM $KA_PARENT; wait $KA_PARENT; reader_stop; rm -f $FIFO
  grep -i "fifo\|script user" "$OUT/ka-$TAG.log" | cut -d' ' -f7- | sort | uniq -c | sed 's/^/  ka log: /'
}
hup_case /test/after.conf after
hup_case /test/before.conf before
hup_case /test/explicit.conf explicit
hup_case /test/nouser.conf nouser

echo "=== reload with a change (RS .23 added, then removed while UP; RS .22 down during the reload)"
TAG=change; F=$OUT/fifo-$TAG.log; : > "$F"; cp /test/before.conf $RUN/c.conf
reader_start $FIFO "$F"; ka_start $RUN/c.conf $TAG; sleep 6
kill -9 $S2; wait_line "$F" 0 'RS \[192.0.2.22\].*DOWN' 12 >/dev/null
n=$(nlines "$F"); cp /test/before-plus.conf $RUN/c.conf; ev "HUP: .23 added"; kill -HUP $KA_PARENT; sleep 6
echo "  lines after HUP (.23 added, .22 down):"; tail -n +"$((n+1))" "$F" | sed 's/^/    /'
n=$(nlines "$F"); cp /test/before.conf $RUN/c.conf; ev "HUP: .23 removed"; kill -HUP $KA_PARENT; sleep 6
echo "  lines after HUP (.23 removed while UP):"; tail -n +"$((n+1))" "$F" | sed 's/^/    /'
shadow change
echo "=== burst: kill .21 and .22 (restart .22 first) -- fifo order vs the checker's own log order"
srv_tcp 2 80; S2=$SRV_PID; sleep 4
n=$(nlines "$F"); kill -9 $S1 $S2; sleep 5; srv_tcp 2 80; S2=$SRV_PID; srv_tcp 1 80; S1=$SRV_PID; sleep 5
echo "  fifo:"; tail -n +"$((n+1))" "$F" | sed 's/^/    /'
echo "  ka log:"; grep -E "Disabling|Enabling" "$OUT/ka-$TAG.log" | tail -4 | cut -d' ' -f7- | sed 's/^/    /'
ev "stop"; n=$(nlines "$F"); kill -TERM $KA_PARENT; wait $KA_PARENT; sleep 1; echo "  lines at clean stop: $(tail -n +"$((n+1))" "$F" | grep -vc EOF)"
reader_stop; rm -f $FIFO

echo "=== fifo script: slow (3 s per line) then killed; respawned on HUP / checker respawn?"
TAG=script; S=$OUT/fifo-script.log; : > $S; echo slow > $RUN/script-mode
ka_start /test/script.conf $TAG; sleep 6
n=$(nlines "$OUT/ka-$TAG.log"); t0=$(now); kill -9 $S1 $S2 $S3; sleep 5
echo "  checker (ka log) after kill at $t0:"; tail -n +"$((n+1))" "$OUT/ka-$TAG.log" | grep -E "Disabling" | sed 's/^/    /'
shadow "slow script"
srv_tcp 1 80; S1=$SRV_PID; srv_tcp 2 80; S2=$SRV_PID; srv_tcp 3 80; S3=$SRV_PID; sleep 12
echo "  script log:"; sed 's/^/    /' $S
echo die > $RUN/script-mode; SP=$(pgrep -f fifo-script.sh | head -1); ev "kill script $SP"; kill -9 $SP; sleep 2
kill -9 $S1; sleep 4; srv_tcp 1 80; S1=$SRV_PID; sleep 4
echo "  after script death, transitions happened; script processes: $(pgrep -f fifo-script.sh | tr '\n' ' ')"
ev "HUP"; kill -HUP $KA_PARENT; sleep 6; echo "  after HUP script processes: $(pgrep -f fifo-script.sh | tr '\n' ' ')"
ev "kill -9 checker"; kill -9 "$(ka_chk)"; sleep 7; echo "  after checker respawn script processes: $(pgrep -f fifo-script.sh | tr '\n' ' ')"
F=$OUT/fifo-late.log; : > "$F"; reader_start $FIFO "$F"; sleep 2; echo "  a reader attached now gets (queued lines):"; sed 's/^/    /' "$F"
kill -9 $S1; sleep 5; echo "  and after one more transition:"; sed 's/^/    /' "$F"
kill -TERM $KA_PARENT; wait $KA_PARENT; sleep 2; reader_stop
echo "  script log (final):"; sed 's/^/    /' $S
mon_stop; echo "=== root table monitor: $(wc -l < $OUT/mon.samples) samples"; cat $OUT/mon.log
