# shellcheck shell=bash
# net.sh: lvsgen's devices (step devices), addresses (step addresses), default routes (step
# routes) and GUE receive ports (step fou); the reads of the host's links and addresses that
# preflight.sh and remove.sh use too. Uses common.sh and record.sh.
#
# One 'ip -o link' and one 'ip -o addr' read, parsed in bash, whatever the number of VIPs.
declare -A LVS_LINKS=() # device -> ",FLAG,FLAG,"
lvs_read_links() {
  local line name flags dev
  LVS_LINKS=()
  if [[ -r /sys/class/net/lo/flags ]]; then
    # sysfs, mounted in this network namespace, has each device's flags: no process at all.
    for dev in "${LVS_UP[@]}" "${LVS_NOARP[@]}" "${LVS_DUMMIES[@]}" "${LVS_NICS[@]}"; do
      [[ -r /sys/class/net/$dev/flags ]] || continue
      read -r flags <"/sys/class/net/$dev/flags" || continue
      LVS_LINKS[$dev]=,
      if ((flags & 0x1)); then LVS_LINKS[$dev]+=UP,; fi
      if ((flags & 0x80)); then LVS_LINKS[$dev]+=NOARP,; fi
    done
    return 0
  fi
  while IFS= read -r line; do
    [[ $line == *': '*'<'*'>'* ]] || continue
    name=${line#*: } name=${name%%:*} name=${name%%@*}
    flags=${line#*<} flags=${flags%%>*}
    LVS_LINKS[$name]=,$flags,
  done <<<"$(ip -o link show 2>/dev/null)"
}

LVS_ADDRS= # "\nCIDR DEV\n" for every address on the host
# Read once in preflight; read again by lvs_addresses only when something since may have
# changed them (a sysctl written, an ip command run: LVS_ADDRS_STALE).
LVS_ADDRS_STALE=0
lvs_read_addrs() {
  LVS_ADDRS_STALE=0
  local dev family cidr rest
  LVS_ADDRS=$'\n'
  while read -r _ dev family cidr rest; do
    [[ $family == inet || $family == inet6 ]] || continue
    LVS_ADDRS+="$cidr $dev"$'\n'
  done <<<"$(ip -o addr show 2>/dev/null)"
}

# lvs_ip ARG...: an 'ip' command, printed and counted like lvs_run, queued for lvs_ip_flush,
# which runs the queue as one 'ip -batch': one process per step, whatever the number of VIPs.
LVS_IPQ=()
lvs_ip() {
  LVS_CHANGES=$((LVS_CHANGES + 1))
  if ((LVS_DRY_RUN)); then
    printf 'lvsgen[%s]: would run: ip' "$LVS_HOST"
  else
    printf 'lvsgen[%s]: + ip' "$LVS_HOST"
  fi
  printf ' %q' "$@"
  printf '\n'
  ((LVS_DRY_RUN)) || LVS_IPQ+=("$*")
}

lvs_ip_flush() { # ip -batch stops at the first command that fails and names its line
  ((${#LVS_IPQ[@]} > 0)) || return 0
  local text rc=0
  printf -v text '%s\n' "${LVS_IPQ[@]}"
  text=${text%$'\n'} # the here-string ends it
  LVS_ADDRS_STALE=1
  ip -batch - <<<"$text" || rc=$?
  ((rc == 0)) || lvs_die "'ip -batch -' failed with exit status $rc; its commands, line by line:"$'\n'"$text"
  LVS_IPQ=()
}

# lvsgen's own devices: the only ones the early boot path touches (the NIC comes later).
lvs_early_device() { [[ $1 == lo || $1 == tunl0 || $1 == gre0 ]] || lvs_in "$1" "${LVS_DUMMIES[@]}"; }

# --- GUE receive ports (ip fou) ------------------------------------------------------------------
# A real server of a gue tunnel opens the tunnel's UDP port for GUE; the IPIP packet inside goes
# to tunl0. The port is a kernel socket, gone at reboot: the early boot path opens it again.
[[ -n ${LVS_FOU+x} ]] || LVS_FOU=()
lvs_fou() {
  ((${#LVS_FOU[@]} > 0)) || return 0
  lvs_step fou
  local port have=
  if [[ -d /sys/module/fou ]] || ! ((LVS_DRY_RUN)); then
    have=$(ip fou show 2>&1) || lvs_die "'ip fou show' failed: $have"
  fi
  for port in "${LVS_FOU[@]}"; do
    [[ $'\n'$have$'\n' == *$'\n'"port $port gue"[$' \n']* ]] && continue
    lvs_record_add fou "$port"
    lvs_run ip fou add port "$port" gue
  done
}

lvs_devices() {
  lvs_step devices
  local dev
  for dev in "${LVS_DUMMIES[@]}"; do
    if [[ -z ${LVS_LINKS[$dev]-} ]]; then
      lvs_record_add dummy "$dev"
      lvs_ip link add "$dev" type dummy
      LVS_LINKS[$dev]=,
    fi
  done
  for dev in "${LVS_NOARP[@]}"; do
    [[ ${LVS_LINKS[$dev]-} == *,NOARP,* ]] || lvs_ip link set dev "$dev" arp off
  done
  for dev in "${LVS_UP[@]}"; do
    ((LVS_BOOT == 1)) && ! lvs_early_device "$dev" && continue
    [[ ${LVS_LINKS[$dev]-} == *,UP,* ]] || lvs_ip link set dev "$dev" up
  done
  lvs_ip_flush
}

lvs_addresses() {
  lvs_step addresses
  local -A have=() ip_on=()
  local cidr dev entry nodad
  if ((LVS_ADDRS_STALE)) || [[ -z $LVS_ADDRS ]]; then lvs_read_addrs; fi
  while read -r cidr dev; do
    have["$cidr $dev"]=1
    ip_on["${cidr%/*} $dev"]=$cidr
  done <<<"$LVS_ADDRS"
  for entry in "${LVS_ADDRESSES[@]}"; do
    read -r cidr dev nodad <<<"$entry"
    [[ -n ${have["$cidr $dev"]-} ]] && continue
    ((LVS_BOOT == 1)) && ! lvs_early_device "$dev" && continue
    if [[ -n ${ip_on["${cidr%/*} $dev"]-} ]]; then
      lvs_die "$dev has ${cidr%/*} as ${ip_on["${cidr%/*} $dev"]}, not $cidr; remove it ('ip addr del ${ip_on["${cidr%/*} $dev"]} dev $dev') and run again"
    fi
    lvs_record_add addr "$cidr" "$dev"
    if [[ $nodad == nodad ]]; then
      lvs_ip addr add "$cidr" dev "$dev" nodad
    else
      lvs_ip addr add "$cidr" dev "$dev"
    fi
  done
  lvs_ip_flush
}

lvs_routes() {
  lvs_step routes
  local entry family via dev have
  for entry in "${LVS_ROUTES[@]}"; do
    read -r family via dev <<<"$entry"
    have=$(ip "$family" route show default 2>/dev/null) || have=
    [[ $have == "default via $via dev $dev"* && $have != *$'\n'* ]] && continue
    [[ -n ${LVS_REC[route$'\t'$family]-} ]] || lvs_record_add route "$family" "$via" "$dev" "${have%%$'\n'*}"
    lvs_run ip "$family" route replace default via "$via" dev "$dev"
  done
}
