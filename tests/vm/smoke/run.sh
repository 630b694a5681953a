#!/usr/bin/env bash
# VM smoke test (runs in the guest as /test/run.sh; see test_vm_smoke.py).
# Hand-made LVS-DR cluster on one bridge: client, director, rs1, rs2. Documentation addresses
# only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). Also records how
# `ipvsadm-save -n` prints various rules into /test/out/ (the generator's canonical form).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../guest/lib.sh
. "$LVSGEN_GUESTLIB/lib.sh"
OUT=/test/out
mkdir -p "$OUT"
VIP=192.0.2.100
RULES="-A -t $VIP:80 -s rr
-a -t $VIP:80 -r 192.0.2.11:80 -g -w 1
-a -t $VIP:80 -r 192.0.2.12:80 -g -w 1"

vm_log "kernel $(uname -r)"
# --- 0. the kernel side works from the host userland --------------------------------------------
vm_check "ipvsadm -Ln works" ipvsadm -Ln
# The guest is bare and its kernel does not autoload: this hand-made cluster loads what it uses.
vm_check "kmod modprobe works in the chroot (ip_vs, the schedulers used here, dummy)" \
  modprobe -a ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_mh ip_vs_wlc dummy
vm_check "/sys/module/ip_vs exists" test -d /sys/module/ip_vs
vm_check "scheduler modules loaded (rr wrr sh mh)" \
  test -d /sys/module/ip_vs_rr -a -d /sys/module/ip_vs_wrr -a -d /sys/module/ip_vs_sh -a -d /sys/module/ip_vs_mh

# --- 1. topology ------------------------------------------------------------------------------------
vm_bridge br0
vm_attach_addr client eth0 br0 192.0.2.10/24
for ns in director rs1 rs2; do vm_attach "$ns" eth0 br0; done
# what a generated setup script would do, by hand:
ip -n director addr add 192.0.2.2/24 dev eth0
ip -n director addr add $VIP/32 dev eth0
ip -n rs1 addr add 192.0.2.11/24 dev eth0
ip -n rs2 addr add 192.0.2.12/24 dev eth0
for r in rs1 rs2; do ip -n $r addr add $VIP/32 dev lo; done
vm_log "topology up"

# negative control first: without arp_ignore/arp_announce the real servers answer ARP for VIP
dmac=$(vm_mac director eth0)
macs=$(vm_arp_macs client eth0 $VIP 2)
echo "ARP for $VIP without the sysctls: [$macs] (director $dmac)"
vm_check_eq "no ARP sysctls: 3 MACs answer for the VIP (negative control)" 3 "$(wc -w <<< "$macs")"

for r in rs1 rs2; do
  vm_nsx $r sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
    net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
done
ip -n client neigh flush all
macs=$(vm_arp_macs client eth0 $VIP 2)
echo "ARP for $VIP with the sysctls: [$macs]"
vm_check_eq "with ARP sysctls only the director answers for the VIP" "$dmac" "$macs"

# --- 2. servers, rules -------------------------------------------------------------------------------
vm_http_server rs1 $VIP 80 rs1 || vm_fail "http server rs1"
vm_http_server rs2 $VIP 80 rs2 || vm_fail "http server rs2"
vm_log "http servers up"
printf '%s\n' "$RULES" > "$OUT/rules"
vm_check "ipvsadm-restore loads the rules" vm_ipvs_load director "$OUT/rules"
vm_nsx director ipvsadm-save -n > "$OUT/saved"
vm_check "ipvsadm-save -n equals the loaded rules" diff -u "$OUT/rules" "$OUT/saved"
# a second restore of the same file: does it fail on existing entries? (recorded only)
vm_nsx director ipvsadm-restore < "$OUT/rules" > "$OUT/restore-twice.txt" 2>&1
echo "rc=$?" >> "$OUT/restore-twice.txt"
vm_nsx director ipvsadm-save -n > "$OUT/saved-twice"

# --- 3. traffic ------------------------------------------------------------------------------------
answers=$(vm_fetch client "http://$VIP/" 6)
echo "answers: $(xargs <<< "$answers")"
vm_check_eq "rr over 6 requests: rs1=3 rs2=3" "3 3" "$(vm_count rs1 <<< "$answers") $(vm_count rs2 <<< "$answers")"
vm_check_eq "client's neighbour entry for the VIP is the director" "$dmac" "$(vm_neigh_mac client eth0 $VIP)"
c0=$(vm_ifstat client eth0 rx_bytes); d0=$(vm_ifstat director eth0 rx_bytes)
got=$(vm_fetch_bytes client "http://$VIP/big" 2)
crx=$(( $(vm_ifstat client eth0 rx_bytes) - c0 )); drx=$(( $(vm_ifstat director eth0 rx_bytes) - d0 ))
echo "2 x /big: body $got bytes; client rx $crx bytes, director rx $drx bytes"
vm_check_eq "2 x /big received" 4194304 "$got"
vm_check "DR replies bypass the director (director rx < 100 kB)" test "$drx" -lt 100000
stats=$(vm_ipvs_wait_conns director TCP $VIP:80 8 10)
echo "ipvs conns inpkts outpkts inbytes outbytes: $stats"
vm_check_eq "ipvs: 8 connections" 8 "${stats%% *}"
vm_check_eq "ipvs: OutPkts 0 (DR)" 0 "$(cut -d' ' -f3 <<< "$stats")"
vm_nsx director ipvsadm -Ln --stats --exact
vm_log "traffic checks done"

# --- 4. ipvsadm-save observations (recorded into /test/out for the host) -----------------------------
# real-server order: added in reverse address order
ipvs() { vm_nsx director ipvsadm "$@"; }
ipvs -C
ipvs -A -t $VIP:80 -s rr
ipvs -a -t $VIP:80 -r 192.0.2.12:80 -g -w 1
ipvs -a -t $VIP:80 -r 192.0.2.11:80 -g -w 1
vm_nsx director ipvsadm-save -n > "$OUT/order-ipvsadm.txt"
ipvs -C
printf '%s\n' "-A -t $VIP:80 -s rr" "-a -t $VIP:80 -r 192.0.2.12:80 -g -w 1" \
  "-a -t $VIP:80 -r 192.0.2.11:80 -g -w 1" | vm_nsx director ipvsadm-restore
vm_nsx director ipvsadm-save -n > "$OUT/order-restore.txt"
# services too: add :443 before :80 and a second VIP before the first
ipvs -C
ipvs -A -t 192.0.2.101:80 -s rr
ipvs -A -t $VIP:443 -s rr
ipvs -A -t $VIP:80 -s rr
vm_nsx director ipvsadm-save -n > "$OUT/order-services.txt"

# canonical forms
ip -n director addr add 2001:db8::1/64 dev eth0 nodad
ipvs -C
{
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    read -ra args <<< "$line"
    err=$(ipvs "${args[@]}" 2>&1); rc=$?
    echo "ipvsadm $line => rc=$rc${err:+ $err}"
  done <<'EOF'
-A -t 192.0.2.100:443 -s wrr -p 300
-a -t 192.0.2.100:443 -r 198.51.100.11:8080 -m -w 2
-a -t 192.0.2.100:443 -r 198.51.100.12:8080 -m -w 0
-a -t 192.0.2.100:443 -r 203.0.113.21:443 -i -w 1
-a -t 192.0.2.100:443 -r 203.0.113.22 -i
-A -u 192.0.2.100:53 -s sh -b sh-port -p 60 -M 255.255.255.0
-a -u 192.0.2.100:53 -r 198.51.100.53:53 -m -w 1
-A -u 192.0.2.101:53 -s sh -b sh-fallback,sh-port
-A -t [2001:db8::100]:80 -s wlc
-a -t [2001:db8::100]:80 -r [2001:db8::11]:80 -g -w 3
-a -t [2001:db8::100]:80 -r [2001:db8::12]:80 -g
-A -t 192.0.2.100:8080 -s mh -b mh-port,mh-fallback
-A -f 1 -s rr
-a -f 1 -r 192.0.2.11 -g -w 1
EOF
} > "$OUT/canonical-commands.txt"
cat "$OUT/canonical-commands.txt"
vm_nsx director ipvsadm-save -n > "$OUT/canonical-save-n.txt"
vm_nsx director ipvsadm-save > "$OUT/canonical-save.txt" 2>&1
vm_nsx director ipvsadm -Ln > "$OUT/canonical-Ln.txt"
# does the saved form round-trip through ipvsadm-restore?
ipvs -C
vm_nsx director ipvsadm-restore < "$OUT/canonical-save-n.txt"
vm_nsx director ipvsadm-save -n > "$OUT/canonical-roundtrip.txt"
vm_check "ipvsadm-save -n output round-trips through ipvsadm-restore" \
  diff -u "$OUT/canonical-save-n.txt" "$OUT/canonical-roundtrip.txt"
# ipvsadm sorts with `int r = ntohl(a) - ntohl(b)` per 32-bit word: words differing by >= 2^31
# compare "wrapped". Both addresses below are in one /64; numeric order would put ::11 first.
ipvs -C
ipvs -A -t "[2001:db8::100]:80" -s rr
ipvs -a -t "[2001:db8::100]:80" -r "[2001:db8::11]:80" -g -w 1
ipvs -a -t "[2001:db8::100]:80" -r "[2001:db8::c000:0:0:11]:80" -g -w 1
vm_nsx director ipvsadm-save -n > "$OUT/order-ipv6-wrap.txt"
for f in order-ipvsadm order-restore order-services order-ipv6-wrap canonical-save-n canonical-Ln restore-twice; do
  echo "--- $f"; cat "$OUT/$f.txt"
done

# --- 4b. lvsgen's rules files against the kernel's order -------------------------------------------
# Each generated rules file (the host side puts them in /test/order) is loaded in scrambled
# order: services last-first, then real servers last-first. ipvsadm-save -n then shows the
# order ipvsadm and the kernel give it; test_vm_smoke.py compares it with the file.
mkdir -p "$OUT/order"
for f in /test/order/*.rules; do
  [[ -e $f ]] || continue
  name=${f##*/}
  # shellcheck disable=SC2046 # one word per scheduler and persistence engine
  modprobe -a ip_vs $({ sed -n 's/^-A .* -s \([a-z]*\).*/ip_vs_\1/p' "$f"; sed -n 's/^-A .* --pe \([a-z]*\).*/ip_vs_pe_\1/p' "$f"; } | sort -u)
  ipvs -C
  { grep '^-A ' "$f" | tac; grep '^-a ' "$f" | tac; } > "$OUT/order/${name%.rules}.scrambled"
  vm_nsx director ipvsadm-restore < "$OUT/order/${name%.rules}.scrambled" > "$OUT/order/${name%.rules}.restore" 2>&1
  echo "rc=$?" >> "$OUT/order/${name%.rules}.restore"
  vm_nsx director ipvsadm-save -n > "$OUT/order/${name%.rules}.saved"
done
ipvs -C

# --- 5. systemd-networkd + systemd-sysctl helper --------------------------------------------------
U=$VM_TMP/units-nd1
mkdir -p "$U"
cat > "$U/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
Address=198.51.100.50/24
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
cat > "$U/20-vip.netdev" <<'EOF'
[NetDev]
Name=lvs-vip
Kind=dummy
EOF
cat > "$U/20-vip.network" <<'EOF'
[Match]
Name=lvs-vip

[Network]
Address=198.51.100.100/32
LinkLocalAddressing=no
EOF
printf 'net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n' > "$U/90-lvs.conf"
vm_bridge br1
vm_attach nd1 eth0 br1
t0=$(vm_uptime)
vm_networkd nd1 "$U"
vm_check "networkd configured eth0 and the dummy VIP" \
  vm_wait_until 30 bash -c 'ip -n nd1 -o addr show dev eth0 | grep -q " 198.51.100.50/24 " &&
                            ip -n nd1 -o addr show dev lvs-vip | grep -q " 198.51.100.100/32 "'
echo "networkd took $(awk -v a="$t0" -v b="$(vm_uptime)" 'BEGIN{printf "%.1f", b-a}') s"
vm_check_eq "systemd-sysctl applied the drop-in" "1 2" \
  "$(vm_nsx nd1 cat /proc/sys/net/ipv4/conf/all/arp_ignore) $(vm_nsx nd1 cat /proc/sys/net/ipv4/conf/all/arp_announce)"
vm_check_eq "no networkd parse warnings" "" "$(vm_networkd_warnings nd1)"
vm_check "root namespace /sys is still writable" test -w /sys/class/net/br1/bridge/stp_state
ip -n nd1 -br addr

vm_teardown
vm_check_eq "teardown removed all namespaces" "" "$(ip netns list)"
vm_log "done"
vm_summary
