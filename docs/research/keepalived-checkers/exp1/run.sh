#!/usr/bin/env bash
# exp1: net_namespace_ipvs isolation, lvs_notify_fifo format/lifecycle, lvs_notify_fifo_script,
# checker-only mode. Runs in the lvsgen VM guest (see /work/main/tests/vm/README.md):
#   cp -r docs/research/keepalived-checkers/exp1 /tmp/exp1 && python3 tests/vm/vm.py /tmp/exp1 900
set -uo pipefail
. "$LVSGEN_REPO/docs/research/keepalived-checkers/common.sh"
FIFO=/run/lvsgen/health.fifo
F=$OUT/fifo-A.log; : > "$F"
keepalived -v 2>&1 | head -1
vm_log "kernel $(uname -r)"
topo 1 2 3
srv_tcp 1 80; SRV1=$SRV_PID
srv_tcp 2 80; SRV2=$SRV_PID
echo "shadow route table (must not reach 192.0.2.0/24 once it exists): see later"
lvsgen_table; ipvsadm -S -n > "$OUT/root-S0.txt"; echo "--- root S0:"; cat "$OUT/root-S0.txt"
mon_start
cp /test/ka1.conf $RUN/ka.conf

echo "=== A1: start with namespace lvs-shadow ABSENT, fifo ABSENT, no reader"
ls -l /run/netns/ 2>&1
ka_start $RUN/ka.conf A
sleep 4
if ka_alive $KA_PARENT; then echo "keepalived alive pid=$KA_PARENT chk=$(ka_chk)"; else echo "keepalived EXITED (namespace absent)"; fi
echo "--- /run/netns after start:"; ls -l /run/netns/ 2>&1
echo "--- fifo: $(stat -c '%F %a' $FIFO 2>&1)"
echo "--- keepalived log (namespace absent):"; cat "$OUT/ka-A.log"; echo "--- root table monitor so far:"; cat "$OUT/mon.log"
if ! ka_alive $KA_PARENT || [[ ! -e /run/netns/lvs-shadow ]]; then
  echo "=== A1b: creating lvs-shadow by hand and restarting"
  kill $KA_PARENT 2>/dev/null; sleep 1
  ip netns add lvs-shadow; ip -n lvs-shadow link set lo up
  ka_start $RUN/ka.conf A; sleep 4
  ka_alive $KA_PARENT && echo "keepalived alive pid=$KA_PARENT chk=$(ka_chk)"
  echo "--- fifo: $(stat -c '%F %a' $FIFO 2>&1)"
  ka_alive $KA_PARENT || { echo "keepalived died again; log:"; cat "$OUT/ka-A.log"; mon_stop; cat "$OUT/mon.log"; exit 1; }
fi
echo "--- processes:"; ps -o pid,ppid,args -C keepalived
CHK=$(ka_chk)
for fd in /proc/$CHK/fd/*; do l=$(readlink "$fd"); [[ $l == *fifo* ]] && { echo "checker fd $fd -> $l"; cat /proc/$CHK/fdinfo/${fd##*/}; }; done
echo "--- shadow namespace routes/addrs:"; ip -n lvs-shadow -o addr; ip -n lvs-shadow route
echo "--- checker process namespace: $(readlink /proc/$CHK/ns/net) root: $(readlink /proc/1/ns/net) shadow: $(ip netns exec lvs-shadow readlink /proc/self/ns/net)"
shadow "A1 after start"
snap A1
sleep 2
echo "=== A2: reader attaches late (lines buffered?)"
reader_start $FIFO "$F"; sleep 2
cat "$F"
grep -c . "$OUT/srv-rs2-80.log"; tail -2 "$OUT/srv-rs2-80.log"
echo "=== A3: transitions"
n=$(nlines "$F"); ev "kill rs1 listener"; kill $SRV1
wait_line "$F" $n '192.0.2.21.*DOWN' 15; wait_line "$F" $n '192.0.2.101.*DOWN|VS.*192.0.2.101' 5; sleep 2
n=$(nlines "$F"); ev "start rs1 listener"; srv_tcp 1 80; SRV1=$SRV_PID; ev "rs1 listening"
wait_line "$F" $n '192.0.2.21.*UP' 15; sleep 2
shadow "A3 after rs1 bounce"
n=$(nlines "$F"); ev "kill rs2 listener (HTTP_GET)"; kill $SRV2
wait_line "$F" $n '192.0.2.22.*DOWN' 15; sleep 1
shadow "A3 rs2 down"
snap A3-down
n=$(nlines "$F"); ev "start rs2 listener"; srv_tcp 2 80; SRV2=$SRV_PID; ev "rs2 listening"
wait_line "$F" $n '192.0.2.22.*UP' 15; sleep 1
snap A3
echo "=== A4: SIGHUP, unchanged config"
ev "SIGHUP parent"; kill -HUP $KA_PARENT; sleep 5
ps -o pid,ppid,args -C keepalived; shadow A4; snap A4
echo "=== A4b: SIGHUP with 192.0.2.23 removed from VS .100 and weight of .21 changed to 50"
awk 'BEGIN{skip=0} /real_server 192.0.2.23 80/ && !done {skip=1; done=1} skip{ if ($0 ~ /^    }$/) {skip=0}; next} {print}' /test/ka1.conf | sed '0,/weight 100/s//weight 50/' > $RUN/ka.conf
diff /test/ka1.conf $RUN/ka.conf
ev "SIGHUP parent (changed config)"; kill -HUP $KA_PARENT; sleep 5
shadow A4b; snap A4b
cp /test/ka1.conf $RUN/ka.conf
ev "SIGHUP parent (config restored)"; kill -HUP $KA_PARENT; sleep 5
shadow A4c; snap A4c
echo "=== A5: kill -9 checker child"
CHK=$(ka_chk); ev "kill -9 checker $CHK"; kill -9 $CHK; sleep 6
ps -o pid,ppid,args -C keepalived; echo "new chk pid $(ka_chk)"; shadow A5; snap A5
echo "=== A6: kill -9 parent"
CHK=$(ka_chk); ev "kill -9 parent $KA_PARENT (checker $CHK)"; kill -9 $KA_PARENT; sleep 4
ka_alive $CHK && echo "checker $CHK STILL ALIVE after parent kill -9" || echo "checker $CHK gone after parent kill -9"
ps -o pid,ppid,args -C keepalived
kill -9 $CHK 2>/dev/null; sleep 1
echo "pid files left: $(ls $RUN)"; echo "fifo: $(stat -c %F $FIFO 2>&1)"
shadow "A6 after kill -9 (leftovers)"; snap A6
ev "restart after kill -9"; ka_start $RUN/ka.conf A; sleep 6
ps -o pid,ppid,args -C keepalived; shadow A6b; snap A6b
echo "=== A7: clean stop (SIGTERM parent)"
ev "SIGTERM parent $KA_PARENT"; kill -TERM $KA_PARENT; wait $KA_PARENT; echo "exit rc=$?"; sleep 2
ev "stopped"
echo "fifo after stop: $(stat -c %F $FIFO 2>&1)"; echo "netns after stop: $(ls /run/netns)"
shadow A7; snap A7
reader_stop
echo "=== fifo-A.log (timestamped lines)"; cat "$F"
echo "=== events"; cat "$OUT/events.log"

echo "=== B: lvs_notify_fifo_script (fifo /run/lvsgen/h2.fifo absent before start)"
mkdir -p /usr/local/sbin; cp /test/fifo-script.sh /usr/local/sbin/; chmod 755 /usr/local/sbin/fifo-script.sh
echo normal > $RUN/script-mode
S=$OUT/fifo-script.log; : > $S
ka_start /test/ka2.conf B; sleep 5
echo "fifo: $(stat -c '%F %a' /run/lvsgen/h2.fifo 2>&1)"; ps -o pid,ppid,args -C keepalived,fifo-script.sh
cat $S
n=$(nlines $S); ev "B kill rs1"; kill $SRV1; wait_line $S $n '192.0.2.21.*DOWN' 15; sleep 1
n=$(nlines $S); srv_tcp 1 80; SRV1=$SRV_PID; ev "B rs1 listening"; wait_line $S $n '192.0.2.21.*UP' 15
echo "--- B2: script killed with TERM: is it respawned?"
SP=$(pgrep -f fifo-script.sh | head -1); echo die > $RUN/script-mode
ev "kill TERM script $SP"; kill $SP; sleep 4; ps -o pid,ppid,args -C fifo-script.sh
echo "--- B3: transitions while no script (or script in die mode)"
ev "B3 kill rs1,rs2"; kill $SRV1 $SRV2; sleep 5; ev "B3 restart rs1 rs2"
srv_tcp 1 80; SRV1=$SRV_PID; srv_tcp 2 80; SRV2=$SRV_PID; sleep 5
shadow B3; ps -o pid,ppid,args -C fifo-script.sh
echo "--- B4: SIGHUP: script restarted? (mode slow)"
echo slow > $RUN/script-mode; ev "B4 SIGHUP"; kill -HUP $KA_PARENT; sleep 4; ps -o pid,ppid,args -C fifo-script.sh
ev "B4 kill rs1,rs2"; kill $SRV1 $SRV2; sleep 4; shadow "B4 (checker still acts while script is slow?)"
ev "B4 restart"; srv_tcp 1 80; SRV1=$SRV_PID; srv_tcp 2 80; SRV2=$SRV_PID; sleep 4; shadow B4b
ev "B5 SIGTERM"; kill -TERM $KA_PARENT; wait $KA_PARENT; sleep 4
echo "fifo after stop: $(stat -c %F /run/lvsgen/h2.fifo 2>&1)"; ps -o pid,ppid,args -C fifo-script.sh
echo "=== fifo-script.log"; cat $S
snap B

echo "=== C: fifo pre-created by us, no reader ever; stop; fifo kept?"
mkfifo /run/lvsgen/c.fifo
sed 's#/run/lvsgen/health.fifo#/run/lvsgen/c.fifo#' /test/ka1.conf > $RUN/c.conf
ka_start $RUN/c.conf C; sleep 4; kill $SRV1; sleep 4; ka_alive $KA_PARENT && echo "keepalived alive with unread fifo"
CHK=$(ka_chk); for fd in /proc/$CHK/fd/*; do l=$(readlink "$fd"); [[ $l == *fifo* ]] && { echo "fd $fd -> $l"; grep flags /proc/$CHK/fdinfo/${fd##*/}; }; done
kill -TERM $KA_PARENT; wait $KA_PARENT; echo "fifo after stop: $(stat -c %F /run/lvsgen/c.fifo 2>&1)"
timeout 2 cat /run/lvsgen/c.fifo > $OUT/c-leftover.txt; echo "leftover in fifo after stop (none expected, writer gone): $(wc -l < $OUT/c-leftover.txt)"
srv_tcp 1 80; SRV1=$SRV_PID

echo "=== D: keepalived -t"
for c in /test/ka1.conf /test/ka2.conf /work/shared/reference/keepalived/shadow-chk-d1.conf; do echo "-- $c"; bash /work/shared/reference/keepalived/ka-ci-check.sh /usr/sbin/keepalived $c 2>&1; done

mon_stop
echo "=== root-table monitor: $(wc -l < $OUT/mon.samples) samples, distinct tables:"; cat $OUT/mon.log
ipvsadm -S -n > $OUT/root-final.txt; cmp $OUT/root-S0.txt $OUT/root-final.txt && echo "root table final IDENTICAL to S0"
echo "=== ka logs"; for f in $OUT/ka-*.log; do echo "## $f"; cat $f; done
