# shellcheck shell=bash
# Guest-side helpers for lvsgen's VM tests. Source it from a test's run.sh (bash):
#
#     . "$LVSGEN_GUESTLIB/lib.sh"
#
# The guest runs the HOST's userland (bash, iproute2, ipvsadm, python3, systemd-networkd,
# iputils arping) over 9p, with the guest kernel's modules. Everything here works on network
# namespaces inside the guest; nothing leaves the VM (it has no network card).
# Conventions: functions are prefixed vm_; namespaces are created with their `lo` up;
# host-side veth ends are named h-<ns>-<ifname> (truncated to 15 chars, so keep namespace
# names short); scratch files go under $VM_TMP.

VM_TMP=${VM_TMP:-/tmp/lvsgen-vm}
mkdir -p "$VM_TMP"
VM_PASSN=0
VM_FAILN=0

# --- reporting --------------------------------------------------------------------------------
# "PASS: name" / "FAIL: name" lines (the host side can turn them into test results).
vm_pass() { echo "PASS: $*"; VM_PASSN=$((VM_PASSN + 1)); }
vm_fail() { echo "FAIL: $*"; VM_FAILN=$((VM_FAILN + 1)); }
# vm_check NAME CMD...: PASS if CMD succeeds
vm_check() {
  local name=$1; shift
  if "$@"; then vm_pass "$name"; else vm_fail "$name"; fi
}
# vm_check_eq NAME EXPECTED ACTUAL: PASS if equal, else FAIL with both values shown
vm_check_eq() {
  if [[ $2 == "$3" ]]; then vm_pass "$1"; else vm_fail "$1 (expected [$2], got [$3])"; fi
}
# vm_summary: prints "N passed, M failed"; returns 1 if anything failed
vm_summary() {
  echo "$VM_PASSN passed, $VM_FAILN failed"
  [[ $VM_FAILN == 0 ]]
}
vm_uptime() { cut -d' ' -f1 /proc/uptime; }
vm_log() { echo "[$(vm_uptime)] $*"; }

# --- waiting ------------------------------------------------------------------------------------
# vm_wait_until TIMEOUT_S CMD...: run CMD every 0.1 s until it succeeds; 1 after TIMEOUT_S
# seconds of wall time (the deadline counts CMD's own run time: slow under TCG)
vm_wait_until() {
  local limit=$1; shift
  local now=${EPOCHREALTIME/./}
  local deadline=$(( now + limit * 1000000 ))
  until "$@" >/dev/null 2>&1; do
    now=${EPOCHREALTIME/./}
    if (( now >= deadline )); then return 1; fi
    sleep 0.1
  done
}

# --- topology -----------------------------------------------------------------------------------
# vm_nsx NS CMD...: run CMD in namespace NS
vm_nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# vm_ns_add NS: create namespace NS (if missing) with lo up. Unless VM_DAD=1, IPv6 duplicate
# address detection is off in it (addresses are usable at once instead of ~2 s "tentative").
vm_ns_add() {
  [[ -e /run/netns/$1 ]] && return 0
  ip netns add "$1"
  ip -n "$1" link set lo up
  if [[ ${VM_DAD:-0} != 1 ]]; then
    vm_nsx "$1" sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  fi
}

# vm_bridge NAME: create an up bridge in the guest's root namespace
vm_bridge() {
  modprobe -a veth bridge # the guest is bare: the test bed loads its own device modules
  ip link add "$1" type bridge
  ip link set "$1" up
}

# vm_attach NS IFNAME BRIDGE: veth from NS (created on demand) named IFNAME onto BRIDGE, up,
# WITHOUT addresses (the setup script under test / systemd-networkd configures them)
vm_attach() {
  local ns=$1 ifname=$2 br=$3 host
  host=h-$ns-$ifname
  host=${host:0:15}
  vm_ns_add "$ns"
  ip link add "$host" type veth peer name "$ifname" netns "$ns"
  ip link set "$host" master "$br" up
  ip -n "$ns" link set "$ifname" up
}

# vm_attach_addr NS IFNAME BRIDGE ADDR/PREFIX: as vm_attach, then assign ADDR (e.g. a client)
vm_attach_addr() {
  vm_attach "$1" "$2" "$3"
  ip -n "$1" addr add "$4" dev "$2"
}

# vm_mac NS IFNAME: MAC address, lower case
vm_mac() { vm_nsx "$1" cat "/sys/class/net/$2/address"; }

# vm_ifstat NS IFNAME COUNTER: an interface counter (rx_bytes, tx_bytes, rx_packets, ...)
vm_ifstat() { vm_nsx "$1" cat "/sys/class/net/$2/statistics/$3"; }

# vm_has_addr NS IFNAME ADDR/PREFIX: is ADDR configured on IFNAME?
vm_has_addr() { ip -n "$1" -o addr show dev "$2" 2>/dev/null | grep -qF " $3 "; }

# --- HTTP servers and clients ------------------------------------------------------------------
# vm_http_server NS ADDR PORT NAME: tiny HTTP/1.0 server (vmhttp.py) in NS bound to ADDR:PORT
# (ADDR: 0.0.0.0, ::, an IPv4 or IPv6 address); GET / answers "NAME\n", GET /big 2 MiB.
# Returns when it listens (or 1 after 30 s). Log (one line per request): $VM_TMP/http-NS-PORT.log
vm_http_server() {
  local ns=$1 addr=$2 port=$3 name=$4
  vm_nsx "$ns" python3 -I -S "$LVSGEN_GUESTLIB/vmhttp.py" serve "$addr" "$port" "$name" \
    > "$VM_TMP/http-$ns-$port.log" 2>&1 &
  vm_wait_until 30 vm_listening "$ns" tcp "$port" \
    || { echo "http server in $ns on $addr:$port did not start" >&2; cat "$VM_TMP/http-$ns-$port.log" >&2; return 1; }
}

# vm_listening NS tcp|udp PORT: is something in NS listening on PORT?
vm_listening() {
  local opt=-Hltn
  [[ $2 == udp ]] && opt=-Hlun
  [[ -n $(ip netns exec "$1" ss "$opt" "sport = :$3") ]]
}

# vm_fetch NS URL N [TIMEOUT_S]: N GETs from NS, a new connection each; prints one line per
# request: the body's first line, or "ERR <reason>". Each request is bounded by TIMEOUT_S (3).
vm_fetch() {
  vm_nsx "$1" python3 -I -S "$LVSGEN_GUESTLIB/vmhttp.py" fetch "$2" "$3" "${4:-3}"
}

# vm_fetch_bytes NS URL N [TIMEOUT_S]: N GETs, prints the total number of body bytes received
vm_fetch_bytes() {
  vm_nsx "$1" python3 -I -S "$LVSGEN_GUESTLIB/vmhttp.py" bytes "$2" "$3" "${4:-10}"
}

# vm_count WORD <<< "$answers": how many lines equal WORD
vm_count() { grep -cxF -- "$1" || true; }

# --- IPVS ----------------------------------------------------------------------------------------
# vm_ipvs_stats NS PROTO ADDR:PORT [REAL_ADDR:PORT]: "conns inpkts outpkts inbytes outbytes" of a
# service (or of one of its real servers) from `ipvsadm -Ln --stats --exact`; IPv6 as [addr]:port
vm_ipvs_stats() {
  vm_nsx "$1" ipvsadm -Ln --stats --exact | awk -v proto="$2" -v svc="$3" -v rs="${4:-}" '
    $1 == "TCP" || $1 == "UDP" || $1 == "SCTP" || $1 == "FWM" { insvc = ($1 == proto && $2 == svc) }
    insvc && rs == "" && $1 == proto { print $3, $4, $5, $6, $7; exit }
    insvc && rs != "" && $1 == "->" && $2 == rs { print $3, $4, $5, $6, $7; exit }'
}

# vm_ipvs_wait_conns NS PROTO ADDR:PORT N [TIMEOUT_S] [REAL]: poll (kernel 6.1 updates the
# stats only every 2 s) until the connection count is >= N; prints the stats; 1 on timeout
vm_ipvs_wait_conns() {
  local s now deadline
  now=${EPOCHREALTIME/./}
  deadline=$(( now + ${5:-10} * 1000000 ))
  while :; do
    s=$(vm_ipvs_stats "$1" "$2" "$3" "${6:-}")
    if [[ -n $s ]] && (( ${s%% *} >= $4 )); then echo "$s"; return 0; fi
    now=${EPOCHREALTIME/./}
    if (( now >= deadline )); then echo "$s"; return 1; fi
    sleep 0.2
  done
}

# vm_ipvs_load NS FILE: ipvsadm-restore FILE in NS (clears nothing: FILE decides)
vm_ipvs_load() { vm_nsx "$1" ipvsadm-restore < "$2"; }

# --- ARP ------------------------------------------------------------------------------------------
# vm_arp_macs NS IFNAME ADDR [SECONDS]: the sorted, de-duplicated MACs (lower case, space
# separated) that answer ARP requests for ADDR during SECONDS (default 2; one request per
# second), seen from NS. iputils arping: no -c, because "-c N -w S" stops after N *replies*.
vm_arp_macs() {
  local s=${4:-2}
  vm_nsx "$1" timeout $((s + 3)) arping -w "$s" -I "$2" "$3" 2>/dev/null \
    | sed -n 's/.*reply from .* \[\([0-9A-Fa-f:]*\)\].*/\1/p' | tr 'A-F' 'a-f' | sort -u | xargs
}

# vm_neigh_mac NS IFNAME ADDR: the MAC in NS's neighbour table for ADDR (empty if none)
vm_neigh_mac() {
  ip -n "$1" neigh show "$3" dev "$2" | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}'
}

# --- systemd-networkd / systemd-sysctl in a namespace -------------------------------------------
# vm_networkd NS UNIT_DIR: start systemd-networkd in NS in its own mount namespace with only the
# *.network/*.netdev/*.link files of UNIT_DIR, after applying UNIT_DIR's *.conf sysctl.d files
# with systemd-sysctl. In that mount namespace: /sys read-only (networkd then does not wait for
# udev, as in a container), a private /run/systemd, empty system unit folders. Runs in the
# background; log: $VM_TMP/networkd-NS.log. Remember: `lo` is only touched if a unit matches it.
vm_networkd() {
  local ns=$1 dir
  dir=$(realpath "$2")
  vm_ns_add "$ns"
  # shellcheck disable=SC2016  # expanded by the inner bash
  ip netns exec "$ns" unshare -m --propagation private bash -c '
    set -u
    dir=$1
    mount -o remount,bind,ro /sys
    mkdir -p /run/systemd
    mount -t tmpfs tmpfs /run/systemd
    mkdir -p /run/systemd/network
    for d in /etc/systemd/network /usr/lib/systemd/network /usr/local/lib/systemd/network \
             /etc/sysctl.d /usr/lib/sysctl.d /usr/local/lib/sysctl.d /run/sysctl.d; do
      if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
    done
    for f in "$dir"/*.network "$dir"/*.netdev "$dir"/*.link; do
      if [ -e "$f" ]; then cp "$f" /run/systemd/network/; fi
    done
    confs=()
    for f in "$dir"/*.conf; do if [ -e "$f" ]; then confs+=("$f"); fi; done
    if ((${#confs[@]})); then
      echo "systemd-sysctl ${confs[*]}"
      SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-sysctl "${confs[@]}" || echo "systemd-sysctl failed: $?"
    fi
    exec env SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-networkd
  ' vm-networkd "$dir" > "$VM_TMP/networkd-$ns.log" 2>&1 &
}

# vm_sysctl_apply NS FILE...: apply sysctl.d files in NS with systemd-sysctl (no networkd)
vm_sysctl_apply() {
  local ns=$1; shift
  vm_nsx "$ns" env SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-sysctl "$@"
}

# vm_networkd_warnings NS: parse warnings networkd logged for the units (empty if none)
vm_networkd_warnings() {
  grep -E '^/run/systemd/network/[^:]+:[0-9]+: ' "$VM_TMP/networkd-$1.log" || true
}

# --- teardown ---------------------------------------------------------------------------------------
# vm_teardown: kill every process in every namespace, delete namespaces and bridges
vm_teardown() {
  local ns pids b
  for ns in $(ip netns list | cut -d' ' -f1); do
    pids=$(ip netns pids "$ns" 2>/dev/null | xargs)
    if [[ -n $pids ]]; then
      # shellcheck disable=SC2086
      kill $pids 2>/dev/null || true
    fi
  done
  sleep 0.2
  for ns in $(ip netns list | cut -d' ' -f1); do
    pids=$(ip netns pids "$ns" 2>/dev/null | xargs)
    if [[ -n $pids ]]; then
      # shellcheck disable=SC2086
      kill -9 $pids 2>/dev/null || true
    fi
  done
  ip -all netns delete 2>/dev/null || true
  for b in /sys/class/net/*/bridge; do
    [[ -e $b ]] || continue
    b=${b%/bridge}
    ip link del "${b##*/}" 2>/dev/null || true
  done
}
