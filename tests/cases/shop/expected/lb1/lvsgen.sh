# lvsgen host engine, assembled by lvsgen from templates/host/ (lvsgen/engine.py): do not edit.
# Change the parts there and build again. Each part starts at a line '# --- templates/host/NAME'.
# shellcheck shell=bash disable=SC2153 # the LVS_* data comes from setup.sh, which sources this

# --- templates/host/common.sh ---------------------------------------------------------------------
# lvsgen host engine: the same file on every host, sourced by the host's generated setup.sh.
#
# setup.sh only declares what its host must look like (the LVS_* arrays below) and calls
# lvsgen_main. The engine holds every bit of logic: read the live state once, compute the
# delta, apply it in as few commands as possible, verify, and keep a record of what lvsgen
# added so that it can later remove exactly that and nothing else.
#
# lvsgen assembles the engine from parts in templates/host/, in the order lvsgen/engine.py
# lists them: one part per concern, each using only the parts before it, and each awk program
# in a file of its own (embedded as a variable LVS_AWK_*). main.sh, the last part, runs the
# steps and says which part holds each. This part, common.sh: the data setup.sh declares, the
# run's flags and counters, the messages (lvs_say; lvs_die, which names the step lvs_step set)
# and lvs_run, the one place a command that changes something is run.
#
# Data setup.sh declares before it calls lvsgen_main (every element is one shell word or a
# few words split on spaces; lvsgen's schema allows no spaces in any of them):
#   LVS_HOST LVS_HOSTNAME LVS_CLUSTER    names
#   LVS_FILES      ("SRC MODE" ...)     files of the host folder; each installs to /SRC
#   LVS_UNITS      (SRC ...)            boot units among them, enabled like 'systemctl enable'
#   LVS_NICS       (dev ...)            the host's own interfaces: must exist, never changed
#   LVS_HOST_ADDRESSES ("cidr dev" ...) the host's own addresses: must be there, never changed
#   LVS_MODULES    (name ...)           kernel modules
#   LVS_SYSCTLS    ("key value" ...)    live sysctls (the same as the sysctl.d file)
#   LVS_DUMMIES    (dev ...)            dummy devices lvsgen creates
#   LVS_NOARP      (dev ...)            devices with ARP off
#   LVS_UP         (dev ...)            devices that must be up (lvsgen's, or a NIC it owns)
#   LVS_ADDRESSES  ("cidr dev [nodad]" ...)
#   LVS_ROUTES     ("-4|-6 via dev" ...) default routes
#   LVS_RULES      host-folder path of the ipvsadm rules file ('' on real servers)
#   LVS_IMAGE      host-folder path of its image as /proc/net/ip_vs shows it, or '' (directors)
# and, on directors only:
#   LVS_TABLE_OWNED 1: every IPVS service this file does not describe is removed;
#                   0: only services lvsgen added are (the rest belong to someone else)
#   LVS_DRAIN_TIMEOUT seconds to wait for a removed real server's active connections to end
#   LVS_NFT        host-folder path of the nftables table inet lvsgen (a NAT director's
#                  forwarding policy, the marks of firewall-mark services), or ''
#
# Exit status: 0 done (or, with --dry-run, nothing to do); 2 with --dry-run when changes are
# pending; 1 on any error, with the step that failed named.

LVSGEN_STATE=${LVSGEN_STATE:-/var/lib/lvsgen}   # the record, and the copy the boot unit runs
LVSGEN_RUN=${LVSGEN_RUN:-/run/lvsgen}           # per-boot facts (lock, kernel HZ)
LVSGEN_PROC_IPVS=${LVSGEN_PROC_IPVS:-/proc/net/ip_vs} # the kernel's table (tests point it at a dump)
LVSGEN_PROC_SYS=${LVSGEN_PROC_SYS:-/proc/sys}         # the sysctls (tests point it at a folder)
# A global that one part sets and another reads looks unused to shellcheck, which checks
# each part on its own (tests/test_engine.py): each such line turns SC2034 off for itself
# alone, and names the part that reads it.
LVS_STEP=start
LVS_DRY_RUN=0
# shellcheck disable=SC2034 # read in preflight.sh
LVS_FORCE=0
# shellcheck disable=SC2034 # read in most parts
LVS_BOOT=0 # 1: early boot (--boot), before the network; 2: once it is up (--boot-network)
# shellcheck disable=SC2034 # read in ipvs.sh
LVS_DRAIN=1
LVS_CHANGES=0
# shellcheck disable=SC2034 # read in files.sh
LVS_UNITS_CHANGED=0

lvs_say() { printf 'lvsgen[%s]: %s\n' "${LVS_HOST:-?}" "$*"; }
lvs_die() {
  printf 'lvsgen[%s]: error in step %s: %s\n' "${LVS_HOST:-?}" "$LVS_STEP" "$*" >&2
  exit 1
}
lvs_step() { LVS_STEP=$1; }

# lvs_run CMD...: the one place a change is made. Counts it, prints it, stops on failure.
lvs_run() {
  LVS_CHANGES=$((LVS_CHANGES + 1))
  if ((LVS_DRY_RUN)); then
    printf 'lvsgen[%s]: would run:' "$LVS_HOST"
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  printf 'lvsgen[%s]: +' "$LVS_HOST"
  printf ' %q' "$@"
  printf '\n'
  # shellcheck disable=SC2034 # read in net.sh
  [[ $1 == chmod ]] || LVS_ADDRS_STALE=1
  local rc=0
  "$@" || rc=$?
  ((rc == 0)) || lvs_die "'$*' failed with exit status $rc"
}


lvs_in() { # NEEDLE ITEM...: is NEEDLE one of the items?
  local needle=$1 item
  shift
  for item in "$@"; do
    [[ $item == "$needle" ]] && return 0
  done
  return 1
}

# --- templates/host/record.sh ---------------------------------------------------------------------
# record.sh: the record of what lvsgen added on this host. Uses common.sh.
#
# One line per thing, fields separated by tabs: "file DEST", "addr CIDR DEV", "dummy DEV",
# "route FAMILY VIA DEV OLD", "sysctl KEY ORIGINAL SET", "link PATH", "nft FAMILY NAME". The IPVS services
# lvsgen added are kept apart, in ipvs-services, one name a line (see lvs_ipvs).
# A line is appended the moment the thing is added, so a run that dies halfway still knows
# what it added; removal drops the line. Nothing that is not in the record is ever removed.
declare -A LVS_REC=()
LVS_RECORD_HEADER='# what lvsgen added on this host; setup.sh removes only what is listed here'
LVS_REC_DIRTY=0 # set when a line is dropped: the record is then rewritten at the end

lvs_record_load() {
  local line unended=0
  LVS_REC=()
  [[ -f $LVSGEN_STATE/record ]] || return 0
  while IFS= read -r line || { [[ -n $line ]] && unended=1; }; do
    [[ -z $line || $line == '#'* ]] && continue
    lvs_record_key "$line"
    LVS_REC[$LVS_KEY]=$line
  done <"$LVSGEN_STATE/record"
  # A hand-edited record without a final newline: end it, so the next line stays apart.
  if ((unended && !LVS_DRY_RUN)); then printf '\n' >>"$LVSGEN_STATE/record"; fi
}

# lvs_record_key LINE: sets LVS_KEY to the identity of a record line (its kind and the
# fields that name the thing). No subshell: the record can hold thousands of lines.
lvs_record_key() {
  local kind=${1%%$'\t'*} rest=${1#*$'\t'}
  LVS_KEY=$kind$'\t'${rest%%$'\t'*}
  if [[ $kind == addr ]]; then
    rest=${rest#*$'\t'}
    LVS_KEY+=$'\t'${rest%%$'\t'*}
  fi
}

lvs_record_add() { # FIELD...: remember something lvsgen is about to add
  ((LVS_DRY_RUN)) && return 0
  local line
  printf -v line '%s\t' "$@"
  line=${line%$'\t'}
  lvs_record_key "$line"
  [[ ${LVS_REC[$LVS_KEY]-} == "$line" ]] && return 0
  LVS_REC[$LVS_KEY]=$line
  if [[ ! -f $LVSGEN_STATE/record ]]; then
    [[ -d $LVSGEN_STATE ]] || mkdir -p -- "$LVSGEN_STATE"
    printf '%s\n' "$LVS_RECORD_HEADER" >"$LVSGEN_STATE/record"
  fi
  printf '%s\n' "$line" >>"$LVSGEN_STATE/record"
}

lvs_record_drop() { # KEY
  unset 'LVS_REC[$1]'
  LVS_REC_DIRTY=1
}

lvs_record_save() { # rewrite the record without the lines removal dropped
  ((LVS_DRY_RUN || !LVS_REC_DIRTY)) && return 0
  [[ -d $LVSGEN_STATE ]] || mkdir -p -- "$LVSGEN_STATE"
  local tmp=$LVSGEN_STATE/record.lvsgen-new
  {
    printf '%s\n' "$LVS_RECORD_HEADER"
    if ((${#LVS_REC[@]} > 0)); then
      printf '%s\n' "${LVS_REC[@]}" | LC_ALL=C sort
    fi
  } >"$tmp"
  mv -f -- "$tmp" "$LVSGEN_STATE/record"
}

# --- templates/host/net.sh ------------------------------------------------------------------------
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

# --- templates/host/preflight.sh ------------------------------------------------------------------
# preflight.sh: everything is checked before anything changes (step preflight), then the
# run's lock. Uses common.sh and net.sh (the host's links and addresses).
lvs_preflight() {
  lvs_step preflight
  local -a problems=()
  ((EUID == 0)) || problems+=("run as root: setup.sh changes addresses, sysctls and the IPVS table")
  local tool
  for tool in "ip iproute2" "modprobe kmod" "flock util-linux" "awk mawk or gawk" "stat coreutils" "md5sum coreutils"; do
    command -v "${tool%% *}" >/dev/null || problems+=("'${tool%% *}' not found: install ${tool#* }")
  done
  if [[ -n $LVS_RULES ]]; then
    command -v ipvsadm >/dev/null || problems+=("'ipvsadm' not found: install the ipvsadm package")
  fi
  if [[ -n ${LVS_NFT:-} ]]; then
    command -v nft >/dev/null || problems+=("'nft' not found: install the nftables package (lvsgen's table inet lvsgen holds the NAT forwarding policy and the marks of firewall-mark services)")
  fi
  local actual=${HOSTNAME:-}
  [[ -n $actual ]] || actual=$(uname -n)
  if [[ $actual != "$LVS_HOSTNAME" && ${actual%%.*} != "$LVS_HOSTNAME" && $actual != "${LVS_HOSTNAME%%.*}" ]]; then
    if ((LVS_FORCE)); then
      lvs_say "hostname is '$actual', not '$LVS_HOSTNAME'; going on because of --force"
    else
      problems+=("this script is for '$LVS_HOSTNAME' but this host is '$actual'; copy the right host's folder, or pass --force")
    fi
  fi
  lvs_read_links
  if ((LVS_BOOT != 1)); then
    # The host's own interfaces and addresses: lvsgen needs them and does not make them.
    # (Early at boot they are not there yet, and the early path does not use them.)
    local dev entry cidr
    for dev in "${LVS_NICS[@]}"; do
      [[ -n ${LVS_LINKS[$dev]-} ]] && continue
      problems+=("device '$dev' does not exist on this host; fix 'interface' in the cluster file, or create it (lvsgen does not create the host's own interfaces, VLANs included)")
    done
    lvs_read_addrs
    for entry in "${LVS_HOST_ADDRESSES[@]}"; do
      read -r cidr dev <<<"$entry"
      [[ -z ${LVS_LINKS[$dev]-} || $LVS_ADDRS == *$'\n'"$cidr $dev"$'\n'* ]] && continue
      problems+=("$dev does not have the host's address $cidr: lvsgen leaves the host's own addresses to its network configuration; configure it there (or fix 'address' in the cluster file), or let lvsgen own the interface ('own_interface')")
    done
  fi
  if ((${#problems[@]} > 0)); then
    local p
    for p in "${problems[@]}"; do
      printf 'lvsgen[%s]: error in step preflight: %s\n' "$LVS_HOST" "$p" >&2
    done
    exit 1
  fi
  # The run's folders (the lock, the plan, the verify) and, unless nothing may change, the
  # state folder, by one mkdir: each process counts on a first run. The folders of the files
  # to install are lvs_sync_files' to make.
  local -a dirs=()
  [[ -d $LVSGEN_RUN/plan/verify ]] || dirs+=("$LVSGEN_RUN/plan/verify")
  if ! ((LVS_DRY_RUN || LVS_BOOT)) && [[ ! -d $LVSGEN_STATE ]]; then dirs+=("$LVSGEN_STATE"); fi
  if ((${#dirs[@]} > 0)); then mkdir -p -- "${dirs[@]}" || lvs_die "cannot create ${dirs[*]}"; fi
  exec 9>"$LVSGEN_RUN/setup.lock"
  flock -n 9 || lvs_die "another setup.sh is running on this host"
}

# --- templates/host/kernel.sh ---------------------------------------------------------------------
# kernel.sh: kernel modules (step modules), sysctls (step sysctls), written by bash itself,
# and the IPVS timeouts (step timeouts). Uses common.sh and record.sh.
#
# Kernel modules and sysctls.
lvs_modules() {
  lvs_step modules
  local module
  local -a missing=()
  for module in "${LVS_MODULES[@]}"; do
    [[ -d /sys/module/$module ]] || missing+=("$module")
  done
  # ip_vs first, with its table size, where one is set: the files step, which installs
  # /etc/modprobe.d/lvsgen.conf (what gives it at boot), runs after this one.
  if [[ -n ${LVS_CONN_TAB_BITS:-} ]] && lvs_in ip_vs "${missing[@]}"; then
    lvs_run modprobe -- ip_vs "conn_tab_bits=$LVS_CONN_TAB_BITS"
  fi
  # One modprobe for all of them; it stops at the first that cannot load and names it.
  ((${#missing[@]} == 0)) || lvs_run modprobe -a -- "${missing[@]}"
  lvs_conn_tab_bits "${missing[@]}"
}

# lvs_conn_tab_bits MODULE...: is ip_vs running with LVS_CONN_TAB_BITS? MODULES are the ones
# this run loaded: if ip_vs is one of them, it read /etc/modprobe.d/lvsgen.conf just now, and
# another size is the kernel's doing (memory); if not, the size is due at the next boot.
LVSGEN_SYS_MODULE=${LVSGEN_SYS_MODULE:-/sys/module}
lvs_conn_tab_bits() {
  [[ -n ${LVS_CONN_TAB_BITS:-} ]] || return 0
  local have param=$LVSGEN_SYS_MODULE/ip_vs/parameters/conn_tab_bits
  [[ -r $param ]] || return 0 # dry run: not loaded
  read -r have <"$param"
  [[ $have == "$LVS_CONN_TAB_BITS" ]] && return 0
  if lvs_in ip_vs "$@" && ! ((LVS_DRY_RUN)); then
    lvs_say "ip_vs was loaded with conn_tab_bits=$have, not $LVS_CONN_TAB_BITS: the kernel lowers a size the memory cannot hold"
  else
    lvs_say "ip_vs runs with conn_tab_bits=$have; $LVS_CONN_TAB_BITS (/etc/modprobe.d/lvsgen.conf) takes effect at the next boot, as reloading ip_vs would drop every connection"
  fi
}

lvs_sysctl_path() { # KEY: sets LVS_PATH to its file under /proc/sys ('.' separates, unless the key uses '/')
  if [[ $1 == */* ]]; then
    LVS_PATH=$LVSGEN_PROC_SYS/$1
  else
    LVS_PATH=$LVSGEN_PROC_SYS/${1//.//}
  fi
}

# lvs_sysctl_set KEY VALUE: what 'sysctl -w KEY=VALUE' does (and is printed as), written to
# /proc/sys by bash itself: no process per sysctl.
lvs_sysctl_set() {
  LVS_CHANGES=$((LVS_CHANGES + 1))
  if ((LVS_DRY_RUN)); then
    lvs_say "would run: sysctl -w $1=$2"
    return 0
  fi
  lvs_say "+ sysctl -w $1=$2"
  # shellcheck disable=SC2034 # read in net.sh
  LVS_ADDRS_STALE=1 # disable_ipv6, say, takes addresses away
  lvs_sysctl_path "$1"
  if ! printf '%s\n' "$2" 2>/dev/null >"$LVS_PATH"; then
    lvs_die "'sysctl -w $1=$2' failed: the kernel refused the value"
  fi
}

lvs_sysctls() {
  lvs_step sysctls
  local entry key value path have
  for entry in "${LVS_SYSCTLS[@]}"; do
    key=${entry% *} value=${entry##* }
    lvs_sysctl_path "$key"
    path=$LVS_PATH
    if [[ ! -r $path ]]; then
      if ((LVS_BOOT == 1)) && [[ $key =~ conf[./][^/]+[./] && ! $key =~ conf[./](all|default)[./] ]]; then
        # Early at boot the NIC may not be there yet: systemd-sysctl sets this key from the
        # sysctl.d file when udev adds the device, and conf.all covers it until then.
        continue
      fi
      ((LVS_DRY_RUN)) && { lvs_sysctl_set "$key" "$value"; continue; }
      lvs_die "sysctl $key does not exist on this kernel (is its module loaded?)"
    fi
    read -r have <"$path"
    [[ $have == "$value" ]] && continue
    [[ -n ${LVS_REC[sysctl$'\t'$key]-} ]] || lvs_record_add sysctl "$key" "$have" "$value"
    lvs_sysctl_set "$key" "$value"
  done
}

# --- IPVS timeouts ---------------------------------------------------------------------------------------
# LVS_TIMEOUTS: "TCP TCPFIN UDP" in seconds, 0 for one the file leaves to the kernel. The
# module forgets them when it is loaded again (at boot), so every run sets what differs.
lvs_timeouts_read() { # sets LVS_TIMEOUTS_NOW to the kernel's "TCP TCPFIN UDP"
  local line
  line=$(ipvsadm -L --timeout 2>&1) || lvs_die "'ipvsadm -L --timeout' failed: $line"
  # "Timeout (tcp tcpfin udp): 900 120 300"
  [[ $line == "Timeout (tcp tcpfin udp): "* ]] || lvs_die "cannot read 'ipvsadm -L --timeout': $line"
  LVS_TIMEOUTS_NOW=${line##*: }
}

lvs_timeouts() {
  [[ -n ${LVS_TIMEOUTS:-} ]] || return 0
  lvs_step timeouts
  local -a want have
  read -r -a want <<<"$LVS_TIMEOUTS"
  if [[ ! -r $LVSGEN_PROC_IPVS ]] && ((LVS_DRY_RUN)); then
    lvs_run ipvsadm --set "${want[@]}" # ip_vs is not loaded: the module would start at its defaults
    return 0
  fi
  lvs_timeouts_read
  read -r -a have <<<"$LVS_TIMEOUTS_NOW"
  # The values the host had before lvsgen first set them, to put back when the file drops them:
  # one the file leaves out (0) goes back to the host's own value once lvsgen has set it, and is
  # the kernel's as it is when lvsgen has never touched the timeouts.
  local old=${LVS_REC[timeouts$'\t'set]-}
  local -a orig
  if [[ -n $old ]]; then
    IFS=$'\t' read -r _ _ old _ <<<"$old"
  else
    old=$LVS_TIMEOUTS_NOW
  fi
  read -r -a orig <<<"$old"
  local i new=() v differ=0
  for i in 0 1 2; do
    v=${want[i]}
    ((v != 0)) || v=${orig[i]:-${have[i]}}
    ((v == have[i])) || differ=1
    new+=("$v")
  done
  ((differ)) || return 0
  lvs_record_add timeouts set "$old" "${new[*]}"
  lvs_run ipvsadm --set "${new[@]}"
  ((LVS_DRY_RUN)) && return 0
  lvs_timeouts_read
  [[ $LVS_TIMEOUTS_NOW == "${new[*]}" ]] ||
    lvs_die "the IPVS timeouts are $LVS_TIMEOUTS_NOW after 'ipvsadm --set ${new[*]}', not ${new[*]}"
}

# --- templates/host/files.sh ----------------------------------------------------------------------
# files.sh: the host's files (step files), installed atomically and only when their bytes or
# mode differ; the boot copy of the host folder (step copy, /var/lib/lvsgen/host); the boot
# units, enabled as 'systemctl enable' would (step boot-unit). Uses common.sh and record.sh.
umask 022
declare -A LVS_MODE=() LVS_SIZE=() LVS_SUM=() # path -> mode (as stat prints it), size, MD5 sum

# lvs_inspect_files PATH...: the modes, sizes and checksums of those that exist, by one stat and
# at most one md5sum for all of them, so that a run with nothing to change reads no file in
# bash, whatever the size of the rules file. MD5 only tells an installed copy from its source
# here; anyone who can plant a collision in /etc is root already.
# The sums are kept per boot ($LVSGEN_RUN/sums) under each file's stat signature (size, inode,
# mtime and ctime in nanoseconds): a file whose signature is the same has the same bytes, and
# is not read again. Any write changes the ctime, which no one can set back; a signature whose
# ctime is within two seconds of the sum is not kept (a write in the same clock tick as the
# sum would not show), so the next run sums that file again.
declare -A LVS_SIG=() LVS_SUMS_KEPT=() # path -> "size inode mtime ctime"; -> "signature sum" as kept
LVS_SUMS_READ=0
lvs_inspect_files() {
  local -a present=() unsure=()
  local p m size ino mtime ctime name sig
  for p in "$@"; do
    if [[ -f $p ]]; then present+=("$p"); fi
  done
  ((${#present[@]} > 0)) || return 0
  if ((!LVS_SUMS_READ)); then
    LVS_SUMS_READ=1
    if [[ -r $LVSGEN_RUN/sums ]]; then
      while read -r size ino mtime ctime m name; do
        if [[ -n $name ]]; then LVS_SUMS_KEPT[$name]="$size $ino $mtime $ctime $m"; fi
      done <"$LVSGEN_RUN/sums"
    fi
  fi
  while read -r m size ino mtime ctime name; do
    [[ -n $name ]] || continue
    sig="$size $ino $mtime $ctime"
    LVS_MODE[$name]=$m LVS_SIZE[$name]=$size LVS_SIG[$name]=$sig
    p=${LVS_SUMS_KEPT[$name]-}
    if [[ -n $p && ${p% *} == "$sig" ]]; then
      LVS_SUM[$name]=${p##* }
    else
      unsure+=("$name")
    fi
  done <<<"$(stat -c '%a %s %i %.9Y %.9Z %n' -- "${present[@]}" 2>/dev/null || true)"
  ((${#unsure[@]} > 0)) || return 0
  while read -r m name; do
    if [[ -n $name ]]; then LVS_SUM[$name]=$m; fi
  done <<<"$(md5sum -- "${unsure[@]}" 2>/dev/null || true)"
}

# lvs_sums_save: keep the sums of the files this run inspected (see lvs_inspect_files). A file
# this run wrote is a new inode, so its old signature never matches again. Not in a dry run.
lvs_sums_save() {
  ((LVS_DRY_RUN || ${#LVS_SIG[@]} == 0)) && return 0
  [[ -d $LVSGEN_RUN ]] || return 0
  local name sig ctime text='' now=${LVS_NOW:-$EPOCHSECONDS} # LVS_NOW: for the tests
  for name in "${!LVS_SIG[@]}"; do
    sig=${LVS_SIG[$name]}
    [[ -n ${LVS_SUM[$name]-} ]] || continue
    ctime=${sig##* }
    [[ $ctime == [0-9]*.[0-9]* ]] || continue # a stat that does not print nanoseconds
    ((${ctime%%.*} + 2 < now)) || continue
    text+="$sig ${LVS_SUM[$name]} $name"$'\n'
  done
  printf '%s' "$text" >"$LVSGEN_RUN/sums"
}

# lvs_sync_files SRC DEST MODE [SRC DEST MODE ...]: install each SRC as DEST unless DEST
# already has its bytes and mode. Both must have been inspected (lvs_inspect_files): equal
# sums mean equal bytes. A file is written next to DEST and renamed over it: a small one from
# bash, a large one (a rules file of thousands of lines) by cp, which reads it much faster.
LVS_BIG=262144 # bash reads some 5 MB/s under emulation; a cp costs what bash takes for 200 KB
lvs_sync_files() {
  # The folders that are missing, made by one mkdir.
  local -a dirs=()
  local i dir
  for ((i = 2; i <= $#; i += 3)); do
    dir=${!i}
    dir=${dir%/*}
    if [[ ! -d $dir ]] && ! lvs_in "$dir" "${dirs[@]}"; then dirs+=("$dir"); fi
  done
  if ((${#dirs[@]} > 0 && !LVS_DRY_RUN)); then
    mkdir -p -- "${dirs[@]}" || lvs_die "cannot create ${dirs[*]}"
  fi
  local src dest mode want
  while (($# >= 3)); do
    src=$1 dest=$2 mode=$3
    shift 3
    [[ -n ${LVS_SUM[$src]-} ]] || lvs_die "$src is missing from the host folder or unreadable: copy the whole folder"
    if [[ ${LVS_SUM[$dest]-} == "${LVS_SUM[$src]}" ]]; then
      [[ ${LVS_MODE[$dest]-} == "${mode#0}" ]] || lvs_run chmod "$mode" -- "$dest"
      continue
    fi
    if ((LVS_DRY_RUN || ${LVS_SIZE[$src]:-0} > LVS_BIG)); then
      lvs_write_file "$src" "$dest" "$mode"
      continue
    fi
    want=
    IFS= read -r -d '' want <"$src" || true
    lvs_write_file "$src" "$dest" "$mode" "$want"
  done
}

# With LVS_STAGING=1 (lvs_copy_stage), DEST is only staged: written next to it, and left for
# lvs_copy_commit to rename and to print.
LVS_STAGING=0
LVS_STAGED=() # DEST, what installing it prints; DEST, ...
lvs_write_file() { # SRC DEST MODE [TEXT]: write TEXT (else a copy of SRC) to DEST atomically, with MODE
  local src=$1 dest=$2 mode=$3 what
  LVS_CHANGES=$((LVS_CHANGES + 1))
  printf -v what 'install -D -m %q -- %q %q' "$mode" "$src" "$dest"
  if ((LVS_DRY_RUN)); then
    printf 'lvsgen[%s]: would run: %s\n' "$LVS_HOST" "$what"
    return 0
  fi
  ((LVS_STAGING)) || printf 'lvsgen[%s]: + %s\n' "$LVS_HOST" "$what"
  [[ -d ${dest%/*} ]] || mkdir -p -- "${dest%/*}" || lvs_die "cannot create ${dest%/*}"
  if (($# >= 4)); then
    printf '%s' "$4" >"$dest.lvsgen-new" || lvs_die "cannot write $dest.lvsgen-new"
    if [[ $mode != 0644 ]]; then
      chmod "$mode" -- "$dest.lvsgen-new" || lvs_die "cannot chmod $dest.lvsgen-new"
    fi
  else
    # A new file (not one an earlier run left), so that it has the mode of SRC less the umask.
    cp --remove-destination -- "$src" "$dest.lvsgen-new" || lvs_die "cannot copy $src to $dest.lvsgen-new"
    if [[ ${LVS_MODE[$src]-} != "${mode#0}" ]]; then
      chmod "$mode" -- "$dest.lvsgen-new" || lvs_die "cannot chmod $dest.lvsgen-new"
    fi
  fi
  if ((LVS_STAGING)); then
    LVS_STAGED+=("$dest" "$what")
    return 0
  fi
  mv -f -- "$dest.lvsgen-new" "$dest" || lvs_die "cannot rename $dest.lvsgen-new to $dest"
  if [[ $dest == /etc/systemd/system/* ]]; then LVS_UNITS_CHANGED=1; fi
}

# The host's files, in two functions, so that the table's plan can start between them
# (lvsgen_main). lvs_files_inspect: each file is recorded before it is written, and one stat and
# one md5sum inspect them, their sources and the boot copy's files (lvs_copy).
lvs_files_inspect() {
  lvs_step files
  local entry src
  local -a paths=()
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    paths+=("$LVS_HERE/$src" "/$src" "$LVSGEN_STATE/host/$src")
    lvs_record_add file "/$src"
  done
  if [[ -n ${LVS_IMAGE:-} ]]; then paths+=("$LVS_HERE/$LVS_IMAGE" "$LVSGEN_STATE/host/$LVS_IMAGE"); fi
  lvs_inspect_files "${paths[@]}" "$LVS_HERE/setup.sh" "$LVS_HERE/lvsgen.sh" \
    "$LVSGEN_STATE/host/setup.sh" "$LVSGEN_STATE/host/lvsgen.sh"
}

# lvs_files: after lvs_files_inspect, the files installed and the boot copy's staged.
lvs_files() {
  lvs_step files
  local entry src
  local -a sync=()
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    sync+=("$LVS_HERE/$src" "/$src" "${entry##* }")
  done
  lvs_sync_files "${sync[@]}"
  lvs_copy_stage
  lvs_step files
}

# The copy of the host folder that the boot unit runs (and that monitoring can run with
# --dry-run), under the state folder, so that a reboot does not depend on where the user
# copied the host folder. It is updated last, after everything else succeeded: a failed run
# leaves the last good copy. cloud-init writes the host folder there directly.
# Its new files are written early (lvs_copy_stage, while the table is planned or loaded, when
# the run would otherwise wait), next to the old ones; lvs_copy renames them into place.
LVS_COPY='' LVS_COPY_TMP='' LVS_COPY_WHAT=''
lvs_copy() {
  lvs_step copy
  if [[ -n $LVS_COPY ]]; then
    lvs_copy_commit
    return 0
  fi
  local copy=$LVSGEN_STATE/host
  [[ $LVS_HERE -ef $copy ]] && return 0
  if [[ ! -e $copy ]]; then
    lvs_copy_new "$copy"
    return 0
  fi
  lvs_copy_sync "$copy"
}

lvs_copy_sync() { # COPY: lvs_sync_files of the host folder's files to COPY
  local copy=$1 entry src
  local -a sync=("$LVS_HERE/setup.sh" "$copy/setup.sh" 0755 "$LVS_HERE/lvsgen.sh" "$copy/lvsgen.sh" 0644)
  if [[ -n ${LVS_IMAGE:-} ]]; then sync+=("$LVS_HERE/$LVS_IMAGE" "$copy/$LVS_IMAGE" 0644); fi
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    sync+=("$LVS_HERE/$src" "$copy/$src" "${entry##* }")
  done
  lvs_sync_files "${sync[@]}"
}

# lvs_copy_stage: the boot copy's changed files (or the whole first copy, in a folder next to
# it) written, not yet renamed. What a failed run staged is removed when it exits (the EXIT
# trap); lvs_copy_commit renames it. Not in a dry run, which only says what lvs_copy would do.
lvs_copy_stage() {
  ((LVS_DRY_RUN)) && return 0
  local copy=$LVSGEN_STATE/host
  [[ $LVS_HERE -ef $copy ]] && return 0
  lvs_step copy
  LVS_COPY=$copy
  trap lvs_copy_unstage EXIT
  if [[ ! -e $copy ]]; then
    lvs_copy_new "$copy" stage
    return 0
  fi
  LVS_STAGING=1
  lvs_copy_sync "$copy"
  LVS_STAGING=0
}

# lvs_copy_commit: rename what lvs_copy_stage wrote, saying what each rename installs.
lvs_copy_commit() {
  local i dest
  if [[ -n $LVS_COPY_TMP ]]; then
    lvs_say "+ $LVS_COPY_WHAT"
    mv -T -- "$LVS_COPY_TMP" "$LVS_COPY" || lvs_die "cannot rename $LVS_COPY_TMP to $LVS_COPY"
    LVS_COPY_TMP=
  fi
  for ((i = 0; i < ${#LVS_STAGED[@]}; i += 2)); do
    dest=${LVS_STAGED[i]}
    lvs_say "+ ${LVS_STAGED[i + 1]}"
    mv -f -- "$dest.lvsgen-new" "$dest" || lvs_die "cannot rename $dest.lvsgen-new to $dest"
  done
  LVS_STAGED=()
}

lvs_copy_unstage() { # the EXIT trap: remove what a run that failed staged
  local -a left=()
  local i
  [[ -z ${LVS_COPY_TMP:-} ]] || left+=("$LVS_COPY_TMP")
  for ((i = 0; i < ${#LVS_STAGED[@]}; i += 2)); do left+=("${LVS_STAGED[i]}.lvsgen-new"); done
  ((${#left[@]} == 0)) || rm -rf -- "${left[@]}" || true
}

# lvs_copy_new COPY [stage]: the first copy, made whole by one cp into a folder next to it and then
# renamed into place, so that it costs three processes however many files there are. With
# 'stage', the folder is only made: lvs_copy_commit renames it.
lvs_copy_new() {
  local copy=$1 tmp=$1.lvsgen-new entry src mode
  local -a names=(setup.sh lvsgen.sh) modes=(0755 0644)
  if [[ -n ${LVS_IMAGE:-} ]]; then
    names+=("$LVS_IMAGE")
    modes+=(0644)
  fi
  for entry in "${LVS_FILES[@]}"; do
    names+=("${entry% *}")
    modes+=("${entry##* }")
  done
  LVS_CHANGES=$((LVS_CHANGES + ${#names[@]}))
  local what
  printf -v what 'cp --parents -- %s %q/ (the boot copy, %d files)' "${names[*]}" "$copy" "${#names[@]}"
  if ((LVS_DRY_RUN)); then
    lvs_say "would run: $what"
    return 0
  fi
  [[ ${2:-} == stage ]] || lvs_say "+ $what"
  [[ ! -e $tmp ]] || rm -rf -- "$tmp" # what a run that died here left
  mkdir -p -- "$tmp" || lvs_die "cannot create $tmp"
  if [[ ${2:-} == stage ]]; then LVS_COPY_TMP=$tmp LVS_COPY_WHAT=$what; fi
  cd -- "$LVS_HERE" || lvs_die "cannot enter $LVS_HERE"
  cp --parents -- "${names[@]}" "$tmp/" || lvs_die "cannot copy the host folder to $tmp"
  cd -- "$OLDPWD" || lvs_die "cannot go back to $OLDPWD"
  # cp gave each copy its source's mode (less the umask); put right the ones that differ.
  local i
  for i in "${!names[@]}"; do
    src=$LVS_HERE/${names[i]}
    mode=${modes[i]}
    if [[ ${LVS_MODE[$src]-} != "${mode#0}" ]]; then
      chmod "$mode" -- "$tmp/${names[i]}" || lvs_die "cannot chmod $tmp/${names[i]}"
    fi
  done
  [[ ${2:-} == stage ]] && return 0
  mv -T -- "$tmp" "$copy" || lvs_die "cannot rename $tmp to $copy"
}

# The boot units: installed like any file (lvs_files), then enabled by the symlink that
# 'systemctl enable' would make, so that it works with or without a running systemd.
LVS_WANTS=/etc/systemd/system/multi-user.target.wants
lvs_enable_unit() {
  ((${#LVS_UNITS[@]} > 0)) || return 0
  lvs_step boot-unit
  local unit link
  for unit in "${LVS_UNITS[@]}"; do
    link=$LVS_WANTS/${unit##*/}
    if ! [[ -L $link && $link -ef /$unit ]]; then
      [[ -d $LVS_WANTS ]] || lvs_run mkdir -p -- "$LVS_WANTS"
      lvs_record_add link "$link"
      lvs_run ln -sfn -- "/$unit" "$link"
      LVS_UNITS_CHANGED=1
    fi
  done
}

# A running systemd learns of a unit that was added, changed or removed.
lvs_systemd_reload() {
  ((LVS_UNITS_CHANGED)) || return 0
  [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null || return 0
  lvs_step boot-unit
  lvs_run systemctl daemon-reload
}

# --- templates/host/nft-union.awk (as LVS_AWK_NFT_UNION) ------------------------------------------
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_NFT_UNION='
# nft-union.awk: the union of two files of the nftables table inet lvsgen, for lvs_nft_union
# (nft.sh), which runs it as LVS_AWK_NFT_UNION (its name in the engine):
#   awk -f nft-union.awk file=1 LOADED file=2 NEW
# LOADED is the table loaded now, NEW the new file, both as lvsgen writes them (a preamble, then
# "table inet NAME {" with set and chain blocks, one element or rule a line). Prints the
# preamble of NEW, then the table with every block and line of either: sets first, then
# chains, the lines of LOADED before the new ones (so that a port whose mark changes keeps its
# old mark until the service that has it is gone); "flags interval" is kept when either has it.
# Exit status 0: each has something the other lacks; 3: NEW only takes things away; 4: it only
# adds (or changes nothing).
function mark(k) { if (file == 1) IN1[k] = 1; else IN2[k] = 1 }
/^table inet [^ ]+ \{$/ { intable = 1; if (file == 2) TABLE = $0; next }
!intable { if (file == 2) PRE[++npre] = $0; next }
/^\t(set|chain) [^ ]+ \{$/ {
  split($0, w, " "); key = w[1] " " w[2]; part = "head"
  if (!(key in KIND)) { KIND[key] = w[1]; ORDER[++norder] = key }
  mark(key); next
}
/^\t\}$/ { key = ""; next }
/^\}$/ { intable = 0; next }
key == "" || /^\t*$/ { next }
/^\t\telements = \{$/ { part = "elements"; next }
part == "elements" && /^\t\t\}$/ { part = "tail"; next }
part == "head" && /^\t\tflags interval$/ { INTERVAL[key] = 1; mark(key SUBSEP "interval"); next }
part == "head" && /^\t\ttype / { if (!(key in HEAD)) HEAD[key] = $0; next }
{
  k = key SUBSEP $0; mark(k)
  if (!(k in HAVE)) { HAVE[k] = 1; LINES[key, ++nlines[key]] = $0 }
}
function emit(key,   i) {
  if (printed++) print ""
  print "\t" key " {"
  if (key in HEAD) print HEAD[key]
  if (KIND[key] == "set") {
    if (key in INTERVAL) print "\t\tflags interval"
    print "\t\telements = {"
    for (i = 1; i <= nlines[key]; i++) print LINES[key, i]
    print "\t\t}"
  } else for (i = 1; i <= nlines[key]; i++) print LINES[key, i]
  print "\t}"
}
END {
  for (i = 1; i <= npre; i++) print PRE[i]
  print TABLE
  for (i = 1; i <= norder; i++) if (KIND[ORDER[i]] == "set") emit(ORDER[i])
  for (i = 1; i <= norder; i++) if (KIND[ORDER[i]] == "chain") emit(ORDER[i])
  print "}"
  for (k in IN1) if (!(k in IN2)) takes = 1
  for (k in IN2) if (!(k in IN1)) adds = 1
  exit (takes && adds) ? 0 : takes ? 3 : 4
}
'

# --- templates/host/nft.sh ------------------------------------------------------------------------
# nft.sh: the nftables table inet lvsgen, a NAT director's forwarding policy and the firewall
# marks of firewall-mark services (step nftables). Uses common.sh and record.sh.
#
# The table, loaded by one 'nft -f' (one transaction that replaces the whole table). Nothing is
# done when the file is the one this boot loaded last and the kernel still lists the table as
# it did right after; anything else (a reboot, a changed file, a hand edit of the table, a
# deleted table) loads it again. One 'nft' process when nothing changed.
#
# A change is made in two steps, like the IPVS table's: before the table, the union of what is
# loaded and what the file says (nft-union.awk), so that nothing is taken away while IPVS
# still uses it: a NAT real server that is drained keeps its replies' way out, and a port that
# leaves a firewall-mark service keeps its mark until the service that takes it over is there.
# After the table (lvs_nftables_finish), the file as it is.
LVS_NFT_NAME='inet lvsgen'
LVS_NFT_PENDING=0

# lvs_nft_union LOADED NEW: print their union; the status says which way they differ (see
# nft-union.awk, LVS_AWK_NFT_UNION).
lvs_nft_union() {
  LC_ALL=C awk "$LVS_AWK_NFT_UNION" file=1 "$1" file=2 "$2"
}

lvs_nft_load() { # FILE TEXT: load FILE, whose content is TEXT, and remember both and the listing
  lvs_record_add nft "$LVS_NFT_NAME"
  lvs_run nft -f "$1"
  ((LVS_DRY_RUN)) && return 0
  [[ -d $LVSGEN_RUN ]] || mkdir -p -- "$LVSGEN_RUN"
  printf '%s' "$2" >"$LVSGEN_RUN/table.nft"
  # shellcheck disable=SC2086 # family and name, two words
  nft -s list table $LVS_NFT_NAME >"$LVSGEN_RUN/table.list" || lvs_die "'nft -s list table $LVS_NFT_NAME' failed right after the load"
}

lvs_nftables() {
  [[ -n ${LVS_NFT:-} ]] || return 0
  lvs_step nftables
  local want='' loaded='' listed='' now union
  IFS= read -r -d '' want <"$LVS_HERE/$LVS_NFT" || true
  if [[ -f $LVSGEN_RUN/table.nft && -f $LVSGEN_RUN/table.list ]]; then
    IFS= read -r -d '' loaded <"$LVSGEN_RUN/table.nft" || true
    IFS= read -r -d '' listed <"$LVSGEN_RUN/table.list" || true
    if [[ -n $listed ]]; then
      # shellcheck disable=SC2086 # family and name, two words
      now=$(nft -s list table $LVS_NFT_NAME 2>/dev/null) || now=
      if [[ -n $now && $now == "${listed%$'\n'}" ]]; then
        # The table is as this boot loaded it: the same file is nothing to do, another one is
        # a change, made in two steps when it takes anything away.
        [[ $want == "$loaded" ]] && return 0
        local rc=0
        union=$(lvs_nft_union "$LVSGEN_RUN/table.nft" "$LVS_HERE/$LVS_NFT") || rc=$?
        case $rc in
          0) # adds and takes away: the union now, the file after the table
            ((LVS_DRY_RUN)) || printf '%s\n' "$union" >"$LVSGEN_RUN/table.union.nft"
            lvs_nft_load "$LVSGEN_RUN/table.union.nft" "$union"$'\n'
            LVS_NFT_PENDING=1
            return 0
            ;;
          3) # only takes away: all of it after the table
            LVS_NFT_PENDING=1
            return 0
            ;;
          4) ;; # only adds: the file now
          *) lvs_die "cannot merge $LVSGEN_RUN/table.nft and $LVS_NFT (see above)" ;;
        esac
      fi
    fi
  fi
  lvs_nft_load "$LVS_HERE/$LVS_NFT" "$want"
}

# After the IPVS table: the file as it is, when the step before loaded more than it says.
lvs_nftables_finish() {
  ((LVS_NFT_PENDING)) || return 0
  lvs_step nftables
  local want=''
  IFS= read -r -d '' want <"$LVS_HERE/$LVS_NFT" || true
  lvs_nft_load "$LVS_HERE/$LVS_NFT" "$want"
  LVS_NFT_PENDING=0
}

# --- templates/host/sync.sh -----------------------------------------------------------------------
# sync.sh: the IPVS connection sync daemons (step sync-daemon). Uses common.sh and record.sh.
#
# LVS_SYNC: "STATE INTERFACE SYNCID MAXLEN" each (MAXLEN 0: the kernel's choice). They run in
# the kernel until stopped or until ip_vs is unloaded, so a boot starts them again; that is
# the network boot unit's job, once the interface is up.
[[ -n ${LVS_SYNC+x} ]] || LVS_SYNC=() # directors set it; real servers run none

lvs_sync_read() { # sets LVS_SYNC_NOW to what 'ipvsadm -L --daemon' prints
  LVS_SYNC_NOW=$(ipvsadm -L --daemon 2>&1) || lvs_die "'ipvsadm -L --daemon' failed: $LVS_SYNC_NOW"
}

lvs_sync_running() { # STATE: sets LVS_LINE to its line ("master sync daemon (mcast=eth0, ...)"), or ''
  local l
  LVS_LINE=
  while IFS= read -r l; do
    if [[ $l == "$1 sync daemon ("* ]]; then LVS_LINE=$l; fi
  done <<<"$LVS_SYNC_NOW"
}

lvs_sync_matches() { # LINE STATE INTERFACE SYNCID MAXLEN: does the running daemon say so?
  local expect="$2 sync daemon (mcast=$3, syncid=$4"
  [[ $1 == "$expect,"* || $1 == "$expect)"* ]] || return 1
  (($5 == 0)) || [[ $1 == *" maxlen=$5,"* || $1 == *" maxlen=$5)"* ]]
}

lvs_sync() {
  ((${#LVS_SYNC[@]} > 0)) || return 0
  lvs_step sync-daemon
  local entry state dev id maxlen started=0
  local -a args
  LVS_SYNC_NOW=
  if [[ -r $LVSGEN_PROC_IPVS ]] || ! ((LVS_DRY_RUN)); then lvs_sync_read; fi
  for entry in "${LVS_SYNC[@]}"; do
    read -r state dev id maxlen <<<"$entry"
    lvs_sync_running "$state"
    if [[ -n $LVS_LINE ]] && lvs_sync_matches "$LVS_LINE" "$state" "$dev" "$id" "$maxlen"; then continue; fi
    lvs_record_add sync "$state"
    [[ -z $LVS_LINE ]] || lvs_run ipvsadm --stop-daemon "$state" # another interface or syncid
    args=(--start-daemon "$state" --mcast-interface "$dev" --syncid "$id")
    ((maxlen == 0)) || args+=(--sync-maxlen "$maxlen")
    lvs_run ipvsadm "${args[@]}"
    started=1
  done
  ((started && !LVS_DRY_RUN)) || return 0
  lvs_sync_read
  for entry in "${LVS_SYNC[@]}"; do
    read -r state dev id maxlen <<<"$entry"
    lvs_sync_running "$state"
    lvs_sync_matches "$LVS_LINE" "$state" "$dev" "$id" "$maxlen" ||
      lvs_die "the $state sync daemon is not running as described after starting it; 'ipvsadm -L --daemon' says: ${LVS_SYNC_NOW:-nothing}"
  done
}

# --- templates/host/ipvs-proc.awk (as LVS_AWK_IPVS_PROC) ------------------------------------------
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_IPVS_PROC='
# ipvs-proc.awk: /proc/net/ip_vs read in ipvsadm -S -n form; functions only (in the engine:
# LVS_AWK_IPVS_PROC). With ipvs-proc-print.awk it prints the table (lvs_ipvs_proc), with
# ipvs-plan.awk it is how the plan reads the live table (lvs_ipvs_plan, both in ipvs.sh):
#   awk -v hz=HZ -v counts=0 -f ipvs-proc.awk -f ipvs-proc-print.awk /proc/net/ip_vs
#
# proc_line(COUNTS): the current /proc/net/ip_vs line ($0) in ipvsadm -S -n form ("" for the
# header). With COUNTS 1, a real-server line ends in its active connection count. Sets
# proc_err to 3 (a persistent service and no hz) or 2 (an unknown protocol), and fwm when it
# meets a firewall-mark service, whose family /proc does not show. hz is the kernel HZ, by
# which /proc multiplies persistence timeouts.
# /proc does not show: tunnel types (read as ipip, the default), scheduler flags (-b),
# persistence engines (--pe), one-packet scheduling on IPv6 services, thresholds.
# showable(): can /proc show everything the current ipvsadm -S -n line ($0) says? Only
# lines in the exact form and option order ipvsadm prints qualify; anything else is read
# with ipvsadm -S -n.
# Two hex digits at a time from a table, and every address converted once: /proc has
# thousands of lines, and awk is slow at the digit-by-digit way.
function hex_init(   i, d, a, b) { d = "0123456789ABCDEF"; for (i = 0; i < 256; i++) { a = substr(d, int(i / 16) + 1, 1); b = substr(d, i % 16 + 1, 1); HX[a b] = i }; hex_ready = 1 }
function hexval(h,   i, v) { if (!hex_ready) hex_init(); h = toupper(h); if (length(h) % 2) h = "0" h; v = 0; for (i = 1; i <= length(h); i += 2) v = v * 256 + HX[substr(h, i, 2)]; return v }
function v4(h) { if (!hex_ready) hex_init(); h = toupper(h); return HX[substr(h, 1, 2)] "." HX[substr(h, 3, 2)] "." HX[substr(h, 5, 2)] "." HX[substr(h, 7, 2)] }
function v6(full,   g, i, best, bestlen, run, start, out, w) {
  split(full, g, ":")
  for (i = 1; i <= 8; i++) w[i] = hexval(g[i])
  best = 0; bestlen = 0; run = 0
  for (i = 1; i <= 8; i++) {
    if (w[i] == 0) { if (run == 0) start = i; run++; if (run > bestlen) { best = start; bestlen = run } }
    else run = 0
  }
  if (bestlen < 2) { best = 0; bestlen = 0 }
  # glibc inet_ntop: an IPv4-compatible or -mapped address ends in a dotted quad
  if (best == 1 && (bestlen == 6 || (bestlen == 5 && w[6] == 65535))) {
    out = (bestlen == 5 ? "::ffff:" : "::")
    return out int(w[7] / 256) "." (w[7] % 256) "." int(w[8] / 256) "." (w[8] % 256)
  }
  out = ""
  for (i = 1; i <= 8; i++) {
    if (bestlen && i == best) { out = out "::"; i += bestlen - 1; continue }
    if (out != "" && substr(out, length(out)) != ":") out = out ":"
    out = out sprintf("%x", w[i])
  }
  return out
}
function ap(s,   a, port, r) {
  if (s in AP) return AP[s]
  if (substr(s, 1, 1) == "[") { a = substr(s, 2, index(s, "]") - 2); port = substr(s, index(s, "]") + 2); r = "[" v6(a) "]:" hexval(port) }
  else r = v4(substr(s, 1, 8)) ":" hexval(substr(s, 10, 4))
  AP[s] = r
  return r
}
function swap32(h) { return substr(h, 7, 2) substr(h, 5, 2) substr(h, 3, 2) substr(h, 1, 2) }
function proc_line(counts,   fwd, line, proto, flag, v6svc, ops, i, plen) {
  if ($1 == "IP" || $1 == "Prot" || ($1 == "->" && $2 == "RemoteAddress:Port")) return ""
  if ($1 == "->") {
    fwd = ($3 == "Masq") ? "-m" : ($3 == "Tunnel") ? "-i" : "-g"
    line = "-a " proc_svc " -r " ap($2) " " fwd " -w " $4 ($3 == "Tunnel" ? " --tun-type ipip" : "")
    return line (counts == 1 ? " " $5 : "")
  }
  proto = $1
  if (proto == "FWM") { proc_svc = "-f " hexval($2); v6svc = 0; fwm = 1 }
  else {
    flag = (proto == "TCP") ? "-t" : (proto == "UDP") ? "-u" : (proto == "SCTP") ? "--sctp-service" : ""
    if (flag == "") { printf "lvsgen: /proc/net/ip_vs: unknown protocol %s\n", proto > "/dev/stderr"; proc_err = 2; return "" }
    proc_svc = flag " " ap($2); v6svc = (substr($2, 1, 1) == "[")
  }
  line = "-A " proc_svc " -s " $3
  ops = 0
  for (i = 4; i <= NF; i++) {
    if ($i == "ops") ops = 1
    else if ($i == "persistent") {
      if (hz <= 0) { proc_err = 3; return "" }
      line = line " -p " int($(i + 1) / hz)
      if (v6svc) { plen = hexval(swap32($(i + 2))); if (plen != 128) line = line " -M " plen }
      else if ($(i + 2) != "FFFFFFFF") line = line " -M " v4($(i + 2))
      i += 2
    }
  }
  if (ops) line = line " -o"
  return line
}
function showable() {
  # One match per line, no field splitting: the options in the order ipvsadm -S prints them.
  if (substr($0, 1, 3) == "-A ")
    return $0 ~ /^-A (-t|-u|--sctp-service) [^ ]+ -s [^ ]+( -p [0-9]+)?( -M [^ ]+)?( -o)?$/ && !($0 ~ /^-A [^ ]+ \[/ && $0 ~ / -o$/)
  return $0 ~ /^-a (-t|-u|--sctp-service) [^ ]+ -r [^ ]+ -[gmi] -w [0-9]+( --tun-type ipip)?$/
}
'

# --- templates/host/ipvs-proc-print.awk (as LVS_AWK_IPVS_PROC_PRINT) ------------------------------
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_IPVS_PROC_PRINT='
# ipvs-proc-print.awk: /proc/net/ip_vs printed in ipvsadm -S -n form, in one pass, with the
# functions of ipvs-proc.awk (in the engine: LVS_AWK_IPVS_PROC_PRINT). lvs_ipvs_proc (ipvs.sh):
#   awk -v hz=HZ -v counts=0|1 -f ipvs-proc.awk -f ipvs-proc-print.awk /proc/net/ip_vs
# Exit status 3: a persistent service and no hz; 2: an unknown protocol; 4: the lines are all
# printed, but one is a firewall-mark service, which must be read with ipvsadm -S -n.
{ line = proc_line(counts); if (proc_err) exit proc_err; if (line != "") print line }
END { if (proc_err) exit proc_err; if (fwm) exit 4 }
'

# --- templates/host/ipvs-plan.awk (as LVS_AWK_IPVS_PLAN) ------------------------------------------
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_IPVS_PLAN='
# ipvs-plan.awk: the delta of the IPVS table (in the engine: LVS_AWK_IPVS_PLAN). It needs the
# functions of ipvs-proc.awk; lvs_ipvs_plan (ipvs.sh) runs the two as
#   awk -v owned=1 -v drain=1 -v fmt=save|proc -v split_dir=DIR -v hz=HZ -v host=NAME -v dry=0 \
#       -v timeout=SECONDS -v img=IMAGE -v imgkey=MD5 -f ipvs-proc.awk -f ipvs-plan.awk \
#       [file=0 ONLY] file=2 LIVE file=1 DESIRED file=3 RECORDED
# (every -v may be left out: split_dir, img and imgkey empty, the numbers 0, fmt save).
# It reads file 1 (DESIRED), file 2 (LIVE, in ipvsadm -S -n form, or /proc/net/ip_vs when fmt
# is "proc") and file 3 (RECORDED: services lvsgen added, one name a line). Without split_dir,
# it prints tagged lines:
#   A <ipvsadm line>   phase 1, one ipvsadm -R: add or edit services, then real servers,
#                      then set the real servers that go to weight 0 (drain)
#   W <service> <rs>   wait until that real server has no active connection
#   R <ipvsadm line>   phase 2, one ipvsadm -R: delete real servers, then services
# With split_dir=DIR it writes them to DIR/plan, the bare lines to DIR/A, DIR/W and DIR/R, what
# to print to DIR/show (the commands as run, or as they would run with dry=1), and the
# record of services as it must be before (DIR/services.before) and after (DIR/services.after)
# the change, and the names of the services the A and R lines touch (DIR/touched); it prints
# the counts "A W R ADDED DELETED".
# With img (the image of DESIRED, ipvsadm.proc in the host folder, see lvsgen/procimage.py)
# whose first line ends in imgkey (the MD5 sum of DESIRED) and fmt "proc", DESIRED is not read:
# each /proc line is looked up in the image by its words, and only the lines that match nothing
# are converted. A table equal to the file is then settled by lookups alone, and the plan is
# the same.
# With file 0 (ONLY: service names, one a line, given first) the plan is scoped: lines of
# other services, in DESIRED and LIVE alike, are skipped unread. The plan is then the full
# plan restricted to those services; the verify after a change reads back only what it touched.
# Exit 5: with fmt "proc", DESIRED uses something /proc cannot show; 3 and 4: see proc_line.
# With an image, file 0 is ignored (lvs_ipvs_diff gives a scoped plan no image).
# A service is deleted if it is not described and either owned is 1 or it is in RECORDED.
# A described service belongs to lvsgen with all of its real servers.
function rest(from,   i, s) { s = ""; for (i = from; i <= NF; i++) s = s (s == "" ? "" : " ") $i; return s }
function bad(what) { printf "lvsgen: %s line %d: cannot read: %s\n", what, lineno, $0 > "/dev/stderr"; failed = 2; exit 2 }
function svcname(   i, s) { sname_end = 3; if ($2 == "-f" && $4 == "-6") sname_end = 4; s = $2; for (i = 3; i <= sname_end; i++) s = s " " $i; return s }
function take(line,   k, r) {
  # one line of file 1 or 2, in $0, already in ipvsadm -S -n form
  if ($1 == "-A") {
    if (NF < 5) bad(file == 1 ? "desired" : "live")
    k = svcname()
    if (file == 1) { dsvc[k] = rest(sname_end + 1); dso[++nds] = k }
    else { lsvc[k] = rest(sname_end + 1); lso[++nls] = k }
    return
  }
  if ($1 == "-a") {
    k = svcname()
    if (NF < sname_end + 4 || $(sname_end + 1) != "-r") bad(file == 1 ? "desired" : "live")
    r = $(sname_end + 2)
    if (file == 1) { ddst[k SUBSEP r] = rest(sname_end + 3); ddo[++ndd] = k SUBSEP r }
    else { ldst[k SUBSEP r] = rest(sname_end + 3); ldo[++nld] = k SUBSEP r }
    return
  }
  bad(file == 1 ? "desired" : "live")
}
BEGIN { if (img != "" && fmt == "proc") img_load() }
# img_load: IK[key] = line number (the key of a real server is the key of its service, SUBSEP,
# its own). The lines themselves are not kept: a live line that matches deletes its key, and
# only when keys are left over (the table differs) is the image read again for their lines.
# Any surprise: no image.
function img_load(   l, h, n, t, k, cur) {
  if ((getline l < img) <= 0 || substr(l, 1, 1) != "#" || (n = split(l, h, " ")) < 2 || h[n] != imgkey) { close(img); return }
  imgok = 1
  while ((getline l < img) > 0) {
    t = index(l, "\t"); if (!t) { imgok = 0; break }
    k = substr(l, 1, t - 1); nimg++
    if (substr(k, 1, 3) == "-> ") {
      if (cur == "") { imgok = 0; break }
      k = cur SUBSEP k
    } else {
      if (!index(substr(l, t + 1), "\t")) { imgok = 0; break }  # a service line has its name
      if (index(k, "@")) {  # a persistence timeout in seconds: /proc shows jiffies
        if (hz <= 0 || !match(k, /@[0-9]+/)) { imgok = 0; break }
        k = substr(k, 1, RSTART - 1) (substr(k, RSTART + 1, RLENGTH - 1) * hz) substr(k, RSTART + RLENGTH)
      }
      cur = k
    }
    IK[k] = nimg
  }
  close(img)
  if (!imgok) { split("", IK); nimg = 0 }
}
# img_read(): the next line of the image after its first, as its ipvsadm line (and, for a
# service, its name after a tab) in IMGL, its number in IMGN; 0 at the end.
function img_read(   l) {
  if (!imgn) getline l < img  # the header
  if ((getline l < img) <= 0) { close(img); imgn = 0; return 0 }
  IMGN = ++imgn; IMGL = substr(l, index(l, "\t") + 1)
  return 1
}
# described(NAME): does the desired table have that service? With an image, the names are
# read from it the first time this is asked: a change of a weight never asks.
function described(name) {
  if (imgok && !dnready) {
    dnready = 1
    while (img_read()) if (substr(IMGL, 1, 3) == "-A ") DN[substr(IMGL, index(IMGL, "\t") + 1)] = 1
  }
  return (name in DN)
}
# img_plan: every image line no live line matched (its key is left in IK) is a desired line to
# read, every live line that matched nothing (kept in RAW, after the line of its service, which
# gives the name) is converted and read.
function img_plan(   i, k, line, l) {
  # How well the image matched, for whoever wants to know (the VM tests do): "MATCHED IMAGE LIVE".
  if (split_dir != "") { printf "%d %d %d\n", nhit, nimg, nlive > (split_dir "/image"); close(split_dir "/image") }
  if (nhit == nimg && nlive == nimg) { imgmatch = 1; return }
  for (k in IK) LEFT[IK[k]] = 1
  while (img_read()) {
    if (!(IMGN in LEFT)) continue
    l = IMGL
    if (substr(l, 1, 3) == "-A ") l = substr(l, 1, index(l, "\t") - 1)
    file = 1; lineno = IMGN + 1; $0 = l; take()
  }
  for (i = 1; i <= nraw; i++) {
    $0 = RAW[i]
    line = proc_line(0)  # a service line: also the name of the real servers after it
    if (proc_err) { failed = proc_err; exit proc_err }
    if (line == "" || (i in CTX)) continue
    file = 2; lineno = RAWN[i]; $0 = line; take()
  }
}
file == 3 { if ($0 != "") rec[$0] = 1; next }
file == 0 { if (!imgok && $0 != "") { ONLY[$0] = 1; ONLYP[procname($1, $2)] = 1 }; scoped = !imgok; next }
# procname(FLAG, ADDR:PORT): an IPv4 service as /proc names it ("TCP C0000201:0050"), so that
# the verify skips the services it did not touch unconverted. IPv6 ones are converted.
function procname(flag, addr,   a, q) {
  if (substr(addr, 1, 1) == "[" || split(addr, q, ":") != 2 || split(q[1], a, ".") != 4) return ""
  return ((flag == "-t") ? "TCP" : (flag == "-u") ? "UDP" : "SCTP") " " sprintf("%02X%02X%02X%02X:%04X", a[1], a[2], a[3], a[4], q[2])
}
# LIVE comes before DESIRED. /proc lines are looked up in the image if there is one, else
# kept raw and converted by live_read().
# Scoped, a line is kept only if its service may be in scope: an IPv4 one by its /proc name,
# IPv6 and firewall-mark ones always (live_read converts them, decides the IPv6 ones by name,
# and a firewall-mark one sends the read to ipvsadm -S -n, exit 4). Skipping the rest here,
# unstored, is what makes the verify after a small change cost little on a large table.
file == 2 && fmt == "proc" && scoped {
  if ($1 == "->") { if (keepsvc) RAW[++nraw] = $0; next }
  keepsvc = ($1 == "IP" || $1 == "Prot" || $1 == "FWM" || substr($2, 1, 1) == "[" || (($1 " " $2) in ONLYP))
  if (keepsvc) RAW[++nraw] = $0
  next
}
file == 2 && fmt == "proc" && !imgok { RAW[++nraw] = $0; next }
# With the image: the key of the line (see img_load), looked up, and deleted when found. This
# runs once per line of the table, the cost of a run that changes nothing; a line that matches
# nothing is kept (RAW, its line number in RAWN), after the line of its service (CTX: only for
# the name, unless it did not match either). Rebuilding a service line ($1 = $1) makes its
# spaces single.
file == 2 && fmt == "proc" {
  if ($1 == "->") {
    if ($2 == "RemoteAddress:Port") next
    nlive++
    if ((k = cursk SUBSEP $1 " " $2 " " $3 " " $4) in IK) { delete IK[k]; nhit++; next }
    if (cursraw == "") next  # no service line before it (not in a real table)
    if (!ctxkept) { RAW[++nraw] = cursraw; RAWN[nraw] = cursn; CTX[nraw] = 1; ctxkept = 1 }
    RAW[++nraw] = $0; RAWN[nraw] = FNR
    next
  }
  if ($1 == "IP" || $1 == "Prot") next
  cursraw = $0; cursn = FNR; ctxkept = 0
  $1 = $1; cursk = $0; nlive++
  if (cursk in IK) { delete IK[cursk]; nhit++; next }
  RAW[++nraw] = cursraw; RAWN[nraw] = FNR; ctxkept = 1
  next
}
file == 1 && imgok { nextfile }
function live_read(   i, keep) {
  lived = 1
  if (fmt != "proc") return
  keep = $0
  for (i = 1; i <= nraw; i++) {
    $0 = RAW[i]
    if ($1 == "IP" || $1 == "Prot" || ($1 == "->" && $2 == "RemoteAddress:Port")) continue  # the header
    if (scoped && $1 == "->" && !inscope) continue  # a real server of a service out of scope
    line = proc_line(0)
    if (proc_err) { failed = proc_err; exit proc_err }
    if (line == "") continue
    if (scoped && $1 != "->") { inscope = (proc_svc in ONLY); if (!inscope) continue }
    L2[++n2] = line; LV[line] = i
  }
  $0 = keep
}
file == 1 && !lived { live_read() }
/^[ \t]*$/ || /^#/ { next }
scoped && !(svcname() in ONLY) { next }
file == 1 && fmt == "proc" && !showable() { failed = 5; exit 5 }
# Lines are kept as they are; the common case, a table equal to the file, is settled by
# comparing whole lines, and only a difference pays for reading them field by field.
file == 1 {
  if (!($0 in D)) distinct++
  D[$0] = FNR; L1[++n1] = $0
  if (substr($0, 1, 3) == "-A ") DN[svcname()] = 1  # every described service, by name
  next
}
{ L2[++n2] = $0; LV[$0] = FNR }
function dest(k, attrs,   p) { split(k, p, SUBSEP); return p[1] " -r " p[2] " " attrs }
function zero(attrs,   a) { a = attrs; if (!sub(/-w [0-9]+/, "-w 0", a)) a = a " -w 0"; return a }
function weight(attrs) { if (match(attrs, /-w [0-9]+/)) return substr(attrs, RSTART + 3, RLENGTH - 3) + 0; return 1 }
function out(tag, line,   w, k) {
  n[tag]++
  if (tag != "W") { split(line, w, " "); k = w[2] " " w[3]; if (w[2] == "-f" && w[4] == "-6") k = k " -6"; TOUCH[k] = 1 }
  if (split_dir == "") { print tag " " line; return }
  print tag " " line > (split_dir "/plan")
  print line > (split_dir "/" tag)
  if (tag == "W") show[++nshow] = "lvsgen[" host "]: " (dry ? "would wait" : "waiting") " up to " timeout " s for the active connections of " line " to end"
  else show[++nshow] = "lvsgen[" host "]: " (dry ? "would run: ipvsadm " : "+ ipvsadm ") line
}
END {
  if (failed) exit failed
  if (imgok) { img_plan(); if (failed) exit failed }
  else if (!lived) { live_read(); if (failed) exit failed }
  if (imgmatch) { if (split_dir == "") exit 0; print "0 0 0 0 0"; exit 0 }
  if (fmt == "proc" && fwm) exit 4
  for (i = 1; i <= n2; i++) if (L2[i] in D) same++
  if (!imgok && !(distinct == n1 && n1 == n2 && same == n2)) {
    # Only lines that are not in both need reading, and every described service name.
    for (i = 1; i <= n1; i++) if (!(L1[i] in LV)) { file = 1; lineno = D[L1[i]]; $0 = L1[i]; take() }
    for (i = 1; i <= n2; i++) if (!(L2[i] in D)) { file = 2; lineno = LV[L2[i]]; $0 = L2[i]; take() }
  }
  for (i = 1; i <= nds; i++) { k = dso[i]
    if (!(k in lsvc)) { out("A", "-A " k " " dsvc[k]); added[k] = 1 }
    else if (lsvc[k] != dsvc[k]) out("A", "-E " k " " dsvc[k])
  }
  for (i = 1; i <= ndd; i++) { k = ddo[i]
    if (!(k in ldst)) out("A", "-a " dest(k, ddst[k]))
    else if (ldst[k] != ddst[k]) out("A", "-e " dest(k, ddst[k]))
  }
  for (i = 1; i <= nls; i++) { k = lso[i]
    if (!described(k) && (owned == 1 || (k in rec))) gone[k] = 1
  }
  for (i = 1; i <= nld; i++) { k = ldo[i]
    if (k in ddst) continue
    split(k, p, SUBSEP)
    if (!described(p[1]) && !(p[1] in gone)) continue
    if (drain == 1) {
      if (weight(ldst[k]) != 0) out("A", "-e " dest(k, zero(ldst[k])))
      waits[++nw] = p[1] " " p[2]
    }
    if (described(p[1])) removes[++nr] = "-d " p[1] " -r " p[2]
  }
  for (i = 1; i <= nw; i++) out("W", waits[i])
  for (i = 1; i <= nr; i++) out("R", removes[i])
  for (i = 1; i <= nls; i++) if (lso[i] in gone) { out("R", "-D " lso[i]); ndel++ }
  if (split_dir == "") exit 0
  for (i = 1; i <= nshow; i++) print show[i] > (split_dir "/show")
  for (k in TOUCH) print k > (split_dir "/touched")
  for (k in rec) { print k > (split_dir "/services.before"); if (!(k in gone)) print k > (split_dir "/services.after") }
  for (k in added) if (!(k in rec)) { print k > (split_dir "/services.before"); print k > (split_dir "/services.after") }
  printf "%d %d %d %d %d\n", n["A"], n["W"], n["R"], length(added), ndel + 0
}
'

# --- templates/host/ipvs.sh -----------------------------------------------------------------------
# ipvs.sh: the IPVS table (steps ipvs and drain): read once, the delta applied in two
# 'ipvsadm -R' batches around the drain, then verified; the kernel's HZ; the marker of options
# /proc cannot show. Uses common.sh, record.sh and files.sh (the sums of the rules file and
# its image).
#
# Lines are in 'ipvsadm -S -n' form. A service is named by the words after -A up to its
# options ("-t 192.0.2.1:80", "-f 7 -6"); a real server by its service and its -r address.
#
# The awk programs the functions below run are files of their own, which the engine holds as
# variables: ipvs-proc.awk (LVS_AWK_IPVS_PROC) reads /proc/net/ip_vs in 'ipvsadm -S -n' form,
# ipvs-proc-print.awk (LVS_AWK_IPVS_PROC_PRINT) prints the whole table so, ipvs-plan.awk
# (LVS_AWK_IPVS_PLAN) computes the delta.

# lvs_ipvs_plan DESIRED LIVE RECORDED OWNED DRAIN [FMT [SPLIT_DIR [ONLY]]]: see ipvs-plan.awk.
lvs_ipvs_plan() {
  local -a scope=()
  [[ -z ${8:-} ]] || scope=(file=0 "$8")
  LC_ALL=C awk -v owned="$4" -v drain="$5" -v fmt="${6:-save}" -v split_dir="${7:-}" -v hz="${LVS_HZ:-0}" \
    -v host="${LVS_HOST:-}" -v dry="$LVS_DRY_RUN" -v timeout="${LVS_DRAIN_TIMEOUT:-0}" \
    -v img="${LVS_IMG_IN:-}" -v imgkey="${LVS_IMG_KEY:-}" \
    "$LVS_AWK_IPVS_PROC$LVS_AWK_IPVS_PLAN" "${scope[@]}" file=2 "$2" file=1 "$1" file=3 "$3"
}

# lvs_ipvs_proc [HZ] [COUNTS]: /proc/net/ip_vs in 'ipvsadm -S -n' form, read in one pass.
# Status 3: a persistent service and no HZ; 2: an unknown protocol; 4: the lines are all
# printed, but one is a firewall-mark service, which must be read with ipvsadm -S -n.
lvs_ipvs_proc() {
  LC_ALL=C awk -v hz="${1:-0}" -v counts="${2:-0}" "$LVS_AWK_IPVS_PROC$LVS_AWK_IPVS_PROC_PRINT" "$LVSGEN_PROC_IPVS"
}

# lvs_ipvs_proc_can_show DESIRED: does /proc/net/ip_vs show every option DESIRED uses? The
# plan calls showable() itself; this is the same check on a whole file, for the tests.
lvs_ipvs_proc_can_show() {
  LC_ALL=C awk "$LVS_AWK_IPVS_PROC"'/^[ \t]*$/ || /^#/ { next } { if (!showable()) exit 1 }' "$1"
}

# The kernel HZ, which /proc/net/ip_vs needs for persistence timeouts, in LVS_HZ: kept in
# $LVSGEN_RUN/hz once known; else from the kernel's config if the distribution ships it; else
# learned by comparing /proc with 'ipvsadm -S -n' on a persistent service (lvs_learn_hz).
LVS_HZ=
lvs_kernel_hz() {
  [[ -n $LVS_HZ ]] && return 0
  if [[ -r $LVSGEN_RUN/hz ]]; then
    read -r LVS_HZ <"$LVSGEN_RUN/hz" || true
    [[ -n $LVS_HZ ]] && return 0
  fi
  local release line
  read -r release </proc/sys/kernel/osrelease || release=
  if [[ -r /boot/config-$release ]]; then
    while IFS= read -r line; do
      if [[ $line == CONFIG_HZ=* ]]; then LVS_HZ=${line#CONFIG_HZ=}; break; fi
    done <"/boot/config-$release"
  fi
  if [[ -n $LVS_HZ ]] && ! ((LVS_DRY_RUN)); then
    printf '%s\n' "$LVS_HZ" >"$LVSGEN_RUN/hz"
  fi
  return 0
}

lvs_learn_hz() { # SAVED: from a fresh 'ipvsadm -S -n' and /proc, work out HZ
  local hz
  # Each persistent service against itself: its jiffies in /proc over its seconds in SAVED.
  hz=$({ lvs_ipvs_proc 1 0 2>/dev/null || true; } | LC_ALL=C awk '
    $1 == "-A" { for (i = 4; i < NF; i++) if ($i == "-p") { if (file == 1) t[$2 " " $3] = $(i + 1); else j[$2 " " $3] = $(i + 1) } }
    END {
      for (k in t) if ((k in j) && t[k] > 0 && j[k] % t[k] == 0) { hz = j[k] / t[k]
        if (hz == 100 || hz == 250 || hz == 300 || hz == 1000) { print hz; exit } }
    }' file=1 "$1" file=2 - 2>/dev/null) || hz=
  if [[ -n $hz ]]; then
    LVS_HZ=$hz
    if ! ((LVS_DRY_RUN)); then
      [[ -d $LVSGEN_RUN ]] || mkdir -p -- "$LVSGEN_RUN"
      printf '%s\n' "$hz" >"$LVSGEN_RUN/hz"
    fi
  fi
}

# Options /proc/net/ip_vs cannot show (scheduler flags, --pe, tunnel types other than ipip, -o
# on IPv6): a table that has them must be read with 'ipvsadm -S -n', or a change to them would
# look like no change. Two things say so, and nothing else does:
# - the rules file: lvs_ipvs_hidden_of decides, once a run and on the whole file, whatever
#   path reads the table (a plan, a scoped verify, the background plan, the boot);
# - the kernel: the marker $LVSGEN_STATE/ipvs-hidden is there while the table lvsgen last put
#   right came from a file that had them (lvs_ipvs_hidden_mark writes it from the decision),
#   so that a file that takes them away is still compared with 'ipvsadm -S -n'.
# LVS_IPVS_HIDDEN is the decision (1: the file has such options), LVS_IPVS_HIDDEN_OF the file
# it was made for.
LVS_IPVS_HIDDEN=0 LVS_IPVS_HIDDEN_OF=''
lvs_ipvs_hidden_of() { # DESIRED: the whole rules file
  local desired=$1 head='' rc=0
  [[ $LVS_IPVS_HIDDEN_OF == "$desired" ]] && return 0
  LVS_IPVS_HIDDEN=0
  # An image made from this very file proves it: lvsgen makes one only for a file /proc shows
  # in full (lvsgen/procimage.py; tests/test_host_lib.py checks that the two agree).
  if [[ -n ${LVS_IMAGE:-} && $desired == "$LVS_HERE/$LVS_RULES" && -r $LVS_HERE/$LVS_IMAGE ]]; then
    [[ -n ${LVS_SUM[$desired]-} ]] || lvs_inspect_files "$desired"
    read -r head <"$LVS_HERE/$LVS_IMAGE" || head=''
  fi
  if [[ -z $head || -z ${LVS_SUM[$desired]-} || ${head##* } != "${LVS_SUM[$desired]}" ]]; then
    lvs_ipvs_proc_can_show "$desired" || rc=$?
    ((rc <= 1)) || lvs_die "cannot read $desired (see above)"
    ((rc == 0)) || LVS_IPVS_HIDDEN=1
  fi
  LVS_IPVS_HIDDEN_OF=$desired
}

# lvs_ipvs_diff DESIRED DRAIN DIR [ONLY]: the delta between DESIRED and the live table, split into
# DIR (see ipvs-plan.awk); sets LVS_COUNTS. The live table is read from /proc/net/ip_vs in the
# same awk process, unless it has or may have options /proc cannot show (lvs_ipvs_hidden_of,
# the marker): then with 'ipvsadm -S -n'. Sets LVS_IPVS_HIDDEN.
lvs_ipvs_diff() {
  local desired=$1 drain=$2 dir=$3 only=${4:-} rc=0 recorded=$LVSGEN_STATE/ipvs-services
  [[ -d $dir ]] || mkdir -p -- "$dir"
  : >"$dir/plan"
  : >"$dir/A"
  : >"$dir/W"
  : >"$dir/R"
  : >"$dir/show"
  : >"$dir/services.before"
  : >"$dir/services.after"
  : >"$dir/touched"
  : >"$dir/image"
  [[ -f $recorded ]] || recorded=/dev/null
  local image=${LVS_IMAGE:-}
  if [[ -n $only ]]; then
    # Scoped: of DESIRED, only the lines that name a service in ONLY are read, picked by one
    # grep -F (the plan then checks each name exactly), and the image, which is of the whole
    # file, is not used.
    image=''
    local name pattern=''
    while IFS= read -r name; do [[ -z $name ]] || pattern+=" $name "$'\n'; done <"$only"
    if [[ -z $pattern ]]; then LVS_COUNTS='0 0 0 0 0'; return 0; fi
    printf '%s' "$pattern" >"$dir/pattern"
    grep -F -f "$dir/pattern" -- "$desired" >"$dir/desired" || (($? == 1)) || lvs_die "cannot read $desired"
    desired=$dir/desired
  fi
  # The image is used only with the file it was made from: its sum, known once
  # lvs_files_inspect inspected the files, is taken here on the paths that do not (boot, a
  # first run's load).
  if [[ -n $image && -z ${LVS_SUM[$desired]-} ]]; then lvs_inspect_files "$desired"; fi
  lvs_ipvs_hidden_of "$1" # of the whole file, even when a scope narrowed DESIRED
  if [[ -r $LVSGEN_PROC_IPVS ]] && ((LVS_IPVS_HIDDEN == 0)) && [[ ! -e $LVSGEN_STATE/ipvs-hidden ]]; then
    lvs_kernel_hz
    # The image (see ipvs-plan.awk), if it was made from this very file.
    local LVS_IMG_IN='' LVS_IMG_KEY=''
    if [[ -n $image && -n ${LVS_SUM[$desired]-} ]]; then
      LVS_IMG_IN=$LVS_HERE/$image LVS_IMG_KEY=${LVS_SUM[$desired]}
    fi
    LVS_COUNTS=$(lvs_ipvs_plan "$desired" "$LVSGEN_PROC_IPVS" "$recorded" "$LVS_TABLE_OWNED" "$drain" proc "$dir" "$only") || rc=$?
    ((rc == 0)) && return 0
    # 5: the plan met a line /proc cannot show, which lvs_ipvs_hidden_of said it could.
    ((rc != 5)) || lvs_die "internal error: $desired has options /proc/net/ip_vs cannot show, but lvs_ipvs_hidden_of found none; please report this"
    ((rc == 3 || rc == 4)) || lvs_die "cannot read $desired or the IPVS table (see above)"
    : >"$dir/plan" # a fallback: start over
  elif [[ ! -r $LVSGEN_PROC_IPVS ]] && ((LVS_DRY_RUN)); then
    # ip_vs is not loaded, so the table is empty (loading it would be a change).
    LVS_COUNTS=$(lvs_ipvs_plan "$desired" /dev/null "$recorded" "$LVS_TABLE_OWNED" "$drain" save "$dir" "$only") ||
      lvs_die "cannot read $desired (see above)"
    return 0
  fi
  ipvsadm -S -n >"$dir/live" || lvs_die "'ipvsadm -S -n' failed: is the ip_vs module loaded?"
  ((rc == 3)) && lvs_learn_hz "$dir/live"
  LVS_COUNTS=$(lvs_ipvs_plan "$desired" "$dir/live" "$recorded" "$LVS_TABLE_OWNED" "$drain" save "$dir" "$only") ||
    lvs_die "cannot read $desired or the IPVS table (see above)"
}

# Active connections of the real servers in a W file (service and real server a line).
lvs_ipvs_active() { # WFILE: prints the sum of their active connections
  lvs_kernel_hz
  local hz=${LVS_HZ:-100} # timeouts do not matter here, only names and counts
  { lvs_ipvs_proc "$hz" 1 || true; } | LC_ALL=C awk '
    file == 1 { want[$0] = 1; next }
    $1 == "-a" { for (i = 3; $i != "-r"; i++) ; svc = $2; for (k = 3; k < i; k++) svc = svc " " $k
      if ((svc " " $(i + 1)) in want) sum += $NF }
    END { print sum + 0 }' file=1 "$1" file=2 -
}

lvs_ipvs_batch() { # LABEL FILE: one 'ipvsadm -R' for FILE's lines; fails on any error output
  local label=$1 file=$2 err rc=0
  [[ -s $file ]] || return 0
  err=$(ipvsadm -R <"$file" 2>&1) || rc=$?
  # ipvsadm -R goes on after a line fails and reports only the last line's status: any
  # message at all means some line failed. The caller verifies the whole table either way.
  if ((rc != 0)) || [[ -n $err ]]; then
    LVS_IPVS_ERRORS+="$label: ipvsadm -R said: ${err:-exit status $rc}"$'\n'
    return 1
  fi
}

lvs_print_file() { # FILE: print it with builtins
  local text
  [[ -s $1 ]] || return 0
  IFS= read -r -d '' text <"$1" || true
  printf '%s' "$text"
}

# lvs_ipvs_empty: is the live table empty? Read with builtins: /proc/net/ip_vs is three lines
# of header, then one line per service and real server.
lvs_ipvs_empty() {
  local line n=0
  [[ -r $LVSGEN_PROC_IPVS ]] || return 1
  while IFS= read -r line; do
    ((++n <= 3)) || return 1
  done <"$LVSGEN_PROC_IPVS"
  return 0
}

# lvs_ipvs_load DESIRED DIR: the plan for an empty table, which is the whole file: its lines,
# in its order, go to one 'ipvsadm -R' as they are, and no line needs comparing. Only the
# names of its services are read, for the record. Sets LVS_COUNTS like lvs_ipvs_diff. Fails
# when DESIRED has a line that is neither -A nor -a (a comment, say), or cannot be read: the
# caller then plans as for any table.
lvs_ipvs_load() {
  local desired=$1 dir=$2 recorded=$LVSGEN_STATE/ipvs-services
  [[ -d $dir ]] || mkdir -p -- "$dir"
  # Nothing to wait for and nothing to remove: the files of an earlier run's plan must not be
  # replayed on this table.
  : >"$dir/W"
  : >"$dir/R"
  [[ -f $recorded ]] || recorded=/dev/null
  LVS_COUNTS=$(LC_ALL=C awk -v dir="$dir" -v desired="$desired" -v host="${LVS_HOST:-}" -v dry="$LVS_DRY_RUN" '
    file == 3 { if ($0 != "") rec[$0] = 1; next }
    $1 == "-A" { k = $2 " " $3; if ($2 == "-f" && $4 == "-6") k = k " -6"; added[k] = 1; ns++; next }
    $1 == "-a" { nd++; next }
    { other = 1; exit 9 }  # a comment or an empty line: left to the plan, which skips them
    END {
      if (other) exit 9
      for (k in rec) { print k > (dir "/services.before"); print k > (dir "/services.after") }
      for (k in added) if (!(k in rec)) { print k > (dir "/services.before"); print k > (dir "/services.after") }
      printf "lvsgen[%s]: %s < %s (the table is empty: %d service(s), %d real server(s))\n", host, dry ? "would run: ipvsadm -R" : "+ ipvsadm -R", desired, ns, nd > (dir "/show")
      printf "%d 0 0 %d 0\n", ns + nd, length(added)
    }' file=3 "$recorded" file=1 "$desired")
}

# lvs_ipvs_begin [background]: the plan of the table (on an empty table the whole file as it
# is, else the delta), printed, with the services it adds recorded before they are added (a
# run that dies halfway still knows they are lvsgen's). Sets LVS_IPVS_C (the counts) and
# LVS_IPVS_APPLY (what the first 'ipvsadm -R' takes: the file, or the delta's A lines). With
# 'background', the load of a whole file starts at once, in the background: lvs_ipvs waits.
LVS_IPVS_BEGUN=0 LVS_IPVS_APPLY='' LVS_IPVS_BG=''
LVS_IPVS_C=()
lvs_ipvs_begin() {
  LVS_IPVS_BEGUN=1
  local desired=$LVS_HERE/$LVS_RULES w=$LVSGEN_RUN/plan
  if [[ -n $LVS_IPVS_PLAN_BG ]]; then
    lvs_ipvs_planned
    LVS_IPVS_APPLY=$w/A
  elif lvs_ipvs_empty && lvs_ipvs_load "$desired" "$w"; then
    LVS_IPVS_APPLY=$desired
  else
    lvs_ipvs_diff "$desired" "$LVS_DRAIN" "$w"
    LVS_IPVS_APPLY=$w/A
  fi
  read -r -a LVS_IPVS_C <<<"$LVS_COUNTS"
  ((LVS_IPVS_C[0] + LVS_IPVS_C[1] + LVS_IPVS_C[2] > 0)) || return 0
  LVS_CHANGES=$((LVS_CHANGES + LVS_IPVS_C[0] + LVS_IPVS_C[2]))
  lvs_print_file "$w/show"
  ((LVS_DRY_RUN)) && return 0
  if ((LVS_IPVS_C[3] > 0)); then lvs_state_file "$w/services.before" ipvs-services; fi
  if [[ ${1:-} == background && $LVS_IPVS_APPLY == "$desired" ]]; then
    ipvsadm -R <"$desired" >"$w/load.out" 2>&1 &
    LVS_IPVS_BG=$!
  fi
}

# The files step does not need the table, nor the table the files step, so the two overlap.
# lvs_ipvs_early: on an empty table (a first run), the plan, and the load of the whole file
# started in the background, before the files step, while the kernel takes its thousands of
# lines. Any other table: lvs_ipvs_plan_early. The boot path runs lvs_ipvs alone.
lvs_ipvs_early() {
  [[ -n $LVS_RULES ]] || return 0
  ((LVS_DRY_RUN)) && return 0
  lvs_ipvs_empty || return 0
  lvs_step ipvs
  lvs_ipvs_begin background
}

# lvs_ipvs_plan_early: the plan of a table lvs_ipvs_early did not load (the one pass over the
# table that every run makes) in a background subshell, started in the files step once it has
# the sums (lvs_files_inspect: the image is checked against the rules file's) and while it
# installs the files (lvs_files); lvs_ipvs_planned takes its results. The subshell holds the
# lock (fd 9) until it ends, even if this run dies meanwhile.
LVS_IPVS_PLAN_BG=''
lvs_ipvs_plan_early() {
  [[ -n $LVS_RULES ]] || return 0
  ((LVS_IPVS_BEGUN)) && return 0
  local w=$LVSGEN_RUN/plan
  : >"$w/planned"
  (
    # shellcheck disable=SC2034 # read by lvs_die (common.sh)
    LVS_STEP=ipvs
    lvs_ipvs_diff "$LVS_HERE/$LVS_RULES" "$LVS_DRAIN" "$w"
    printf '%s %s %s\n' "${LVS_HZ:-0}" "$LVS_IPVS_HIDDEN" "$LVS_COUNTS" >"$w/planned"
  ) >"$w/planned.out" 2>&1 &
  LVS_IPVS_PLAN_BG=$!
}

# lvs_ipvs_planned: wait for the plan lvs_ipvs_plan_early started, pass on what it said (on
# standard error: it says something only when it fails, and then it names the step), and
# take its results: LVS_COUNTS, the HZ it may have learned, and the decision of lvs_ipvs_hidden_of.
lvs_ipvs_planned() {
  local w=$LVSGEN_RUN/plan rc=0 hz hidden
  wait "$LVS_IPVS_PLAN_BG" || rc=$?
  LVS_IPVS_PLAN_BG=
  lvs_print_file "$w/planned.out" >&2
  if ((rc != 0)); then
    [[ -s $w/planned.out ]] && exit 1 # its message named the step and the cause
    lvs_die "the plan of the table failed with exit status $rc"
  fi
  read -r hz hidden LVS_COUNTS <"$w/planned" || lvs_die "the plan of the table left no result in $w/planned"
  [[ -n $LVS_HZ || $hz == 0 ]] || LVS_HZ=$hz
  LVS_IPVS_HIDDEN=$hidden LVS_IPVS_HIDDEN_OF=$LVS_HERE/$LVS_RULES # decided there, for the whole file
}

lvs_ipvs() {
  [[ -n $LVS_RULES ]] || return 0
  lvs_step ipvs
  local desired=$LVS_HERE/$LVS_RULES w=$LVSGEN_RUN/plan
  ((LVS_IPVS_BEGUN)) || lvs_ipvs_begin
  local -a c=("${LVS_IPVS_C[@]}")
  if ((c[0] + c[1] + c[2] == 0)); then
    lvs_ipvs_hidden_mark
    return 0
  fi
  ((LVS_DRY_RUN)) && return 0
  LVS_IPVS_ERRORS=
  if [[ -n $LVS_IPVS_BG ]]; then
    # The load lvs_ipvs_begin started: any message at all means some line failed (see
    # lvs_ipvs_batch).
    local rc=0 err=''
    wait "$LVS_IPVS_BG" || rc=$?
    LVS_IPVS_BG=
    if [[ -s $w/load.out ]]; then IFS= read -r -d '' err <"$w/load.out" || true; fi
    if ((rc != 0)) || [[ -n $err ]]; then
      LVS_IPVS_ERRORS+="load: ipvsadm -R said: ${err:-exit status $rc}"$'\n'
    fi
  elif lvs_ipvs_batch "add and edit" "$LVS_IPVS_APPLY"; then
    if [[ -s $w/W ]]; then
      lvs_step drain
      lvs_drain "$w/W"
      lvs_step ipvs
    fi
    lvs_ipvs_batch "remove" "$w/R" || true
  fi
  # Verify: ipvsadm -R reports only its last line, so every service this run touched must now
  # be what the file says, read back from the kernel. The rest was equal a moment ago: the
  # verify of a change reads only the touched services' lines, of the file and of the table.
  if [[ $LVS_IPVS_APPLY == "$desired" ]]; then
    lvs_ipvs_diff "$desired" 0 "$w/verify"
  else
    lvs_ipvs_diff "$desired" 0 "$w/verify" "$w/touched"
  fi
  if [[ $LVS_COUNTS != "0 0 0 "* || -n $LVS_IPVS_ERRORS ]]; then
    local msg left
    msg="the IPVS table does not match $desired after applying it"$'\n'"${LVS_IPVS_ERRORS}"
    if [[ -s $w/verify/plan ]]; then
      IFS= read -r -d '' left <"$w/verify/plan" || true
      msg+="still to do (the kernel refused these; fix the cause and run again):"$'\n'
      left=${left//$'\n'[AR] /$'\n'  ipvsadm }
      msg+="  ipvsadm ${left#[AR] }"
    fi
    lvs_die "$msg"
  fi
  if ((c[4] > 0)); then lvs_state_file "$w/services.after" ipvs-services; fi
  lvs_ipvs_hidden_mark
  return 0
}

# lvs_state_file FILE NAME: FILE's text as $LVSGEN_STATE/NAME, atomically. FILE is under /run,
# another file system as a rule, where mv would copy over the old file instead of renaming.
lvs_state_file() {
  local text=''
  [[ -d $LVSGEN_STATE ]] || mkdir -p -- "$LVSGEN_STATE" || lvs_die "cannot create $LVSGEN_STATE"
  if [[ -s $1 ]]; then IFS= read -r -d '' text <"$1" || true; fi
  printf '%s' "$text" >"$LVSGEN_STATE/$2.lvsgen-new" || lvs_die "cannot write $LVSGEN_STATE/$2.lvsgen-new"
  mv -f -- "$LVSGEN_STATE/$2.lvsgen-new" "$LVSGEN_STATE/$2" || lvs_die "cannot rename $LVSGEN_STATE/$2.lvsgen-new"
}

# The marker (see lvs_ipvs_hidden_of), once the table is what the rules file says: there when
# that file has options /proc cannot show, gone when it has none.
lvs_ipvs_hidden_mark() {
  local marker=$LVSGEN_STATE/ipvs-hidden
  ((LVS_DRY_RUN)) && return 0
  [[ -z ${LVS_RULES:-} ]] || lvs_ipvs_hidden_of "$LVS_HERE/$LVS_RULES"
  if ((LVS_IPVS_HIDDEN)); then
    [[ -e $marker ]] && return 0
    [[ -d $LVSGEN_STATE ]] || mkdir -p -- "$LVSGEN_STATE"
    : >"$marker"
  elif [[ -e $marker ]]; then
    rm -f -- "$marker"
  fi
}

lvs_drain() { # WFILE: wait until the draining real servers have no active connection
  local waits=$1 active start=$SECONDS
  ((LVS_DRAIN_TIMEOUT > 0)) || return 0
  while :; do
    active=$(lvs_ipvs_active "$waits")
    ((active == 0)) && return 0
    if ((SECONDS - start >= LVS_DRAIN_TIMEOUT)); then
      lvs_say "drain: $active connection(s) still active after ${LVS_DRAIN_TIMEOUT} s; removing anyway"
      return 0
    fi
    lvs_say "drain: waiting for $active active connection(s) to end"
    sleep 1
  done
}

# --- templates/host/thresholds.awk (as LVS_AWK_THRESHOLDS) ----------------------------------------
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_THRESHOLDS='
# thresholds.awk: the -e lines that put the connection thresholds of real servers right, for
# lvs_thresholds_plan (thresholds.sh), which runs it as LVS_AWK_THRESHOLDS (its name in the engine):
#   awk -f thresholds.awk file=1 RULES file=2 THRESHOLDS file=3 LISTING
# RULES is the rules file, THRESHOLDS the thresholds file (SERVICE -r SERVER -x UPPER -y LOWER,
# a line), LISTING what ipvsadm -L -n --thresholds prints. For every real server of a described
# service (one the thresholds file does not name must be at 0 0) whose thresholds differ, it
# prints the -e line that puts them right, with the attributes RULES gives that real server.
function svcname(   i, s) { s = $2; n_end = 3; if ($2 == "-f" && $4 == "-6") n_end = 4; for (i = 3; i <= n_end; i++) s = s " " $i; return s }
file == 1 && $1 == "-a" {  # the rules file: every real server of a described service, its attributes
  k = svcname(); for (i = n_end + 1; i <= NF && $i != "-r"; i++) ; rs = $(i + 1)
  a = ""; for (j = i + 2; j <= NF; j++) a = a " " $j
  ATTR[k " " rs] = a; next
}
file == 2 && NF > 0 && $1 !~ /^#/ {  # the thresholds file: SERVICE -r SERVER -x U -y L
  for (i = 1; $i != "-r"; i++) ; k = $1; for (j = 2; j < i; j++) k = k " " $j
  WANT[k " " $(i + 1)] = $(i + 3) " " $(i + 5); next
}
file == 3 && $1 != "->" {  # the listing: a service line ("TCP  192.0.2.1:80 rr ...", "FWM  1 IPv6 rr")
  svc = ($1 == "TCP") ? "-t " $2 : ($1 == "UDP") ? "-u " $2 : ($1 == "SCTP") ? "--sctp-service " $2 : ($1 == "FWM") ? "-f " $2 ($3 == "IPv6" ? " -6" : "") : ""
  next
}
file == 3 && $1 == "->" && $2 != "RemoteAddress:Port" && svc != "" {
  k = svc " " $2
  if (!(k in ATTR)) next  # not a real server the rules file describes
  want = (k in WANT) ? WANT[k] : "0 0"
  if ($3 " " $4 != want) { split(want, w, " "); print "-e " svc " -r " $2 ATTR[k] " -x " w[1] " -y " w[2] }
}
'

# --- templates/host/thresholds.sh -----------------------------------------------------------------
# thresholds.sh: the connection thresholds of real servers (step thresholds), after the
# table. Uses common.sh, record.sh and ipvs.sh (lvs_ipvs_batch).
#
# 'ipvsadm -S' never prints -x/-y, so the rules file cannot hold them and the table's plan does
# not see them; an edit of a real server (-e) without them also sets them to 0. After the table,
# thresholds.awk (LVS_AWK_THRESHOLDS) compares 'ipvsadm -L -n --thresholds' with the thresholds
# file for every real server of a described service and gives the -e lines that put each right.

lvs_thresholds_plan() { # RULES THRESHOLDS LISTING: the -e lines that put the thresholds right
  LC_ALL=C awk "$LVS_AWK_THRESHOLDS" file=1 "$1" file=2 "$2" file=3 "$3"
}

lvs_thresholds() {
  [[ -n ${LVS_RULES:-} ]] || return 0
  local tfile=/dev/null
  [[ -z ${LVS_THRESHOLDS:-} ]] || tfile=$LVS_HERE/$LVS_THRESHOLDS
  # Only a table that has, or had, thresholds pays for the listing.
  [[ $tfile != /dev/null || -n ${LVS_REC[thresholds$'\t'set]-} ]] || return 0
  lvs_step thresholds
  local w=$LVSGEN_RUN/plan fix
  [[ -d $w ]] || mkdir -p -- "$w"
  if [[ ! -r $LVSGEN_PROC_IPVS ]]; then # a dry run before ip_vs is loaded: all of them
    ((LVS_DRY_RUN)) || lvs_die "ip_vs is not loaded"
    : >"$w/listing"
  else
    ipvsadm -L -n --thresholds >"$w/listing" 2>&1 || lvs_die "'ipvsadm -L -n --thresholds' failed: see $w/listing"
  fi
  fix=$(lvs_thresholds_plan "$LVS_HERE/$LVS_RULES" "$tfile" "$w/listing") || lvs_die "cannot compare the thresholds (see above)"
  if [[ -z $fix ]]; then
    # Nothing left to keep at 0: forget that there were thresholds.
    if [[ $tfile == /dev/null && -n ${LVS_REC[thresholds$'\t'set]-} ]] && ! ((LVS_DRY_RUN)); then
      lvs_record_drop "thresholds"$'\t'set
    fi
    return 0
  fi
  local line n=0 verb='+ '
  if ((LVS_DRY_RUN)); then verb='would run: '; fi
  while IFS= read -r line; do
    printf 'lvsgen[%s]: %sipvsadm %s\n' "$LVS_HOST" "$verb" "$line"
    n=$((n + 1))
  done <<<"$fix"
  LVS_CHANGES=$((LVS_CHANGES + n))
  ((LVS_DRY_RUN)) && return 0
  lvs_record_add thresholds set
  printf '%s\n' "$fix" >"$w/thresholds.fix"
  LVS_IPVS_ERRORS=
  lvs_ipvs_batch "thresholds" "$w/thresholds.fix" || true # the check below says what is left
  ipvsadm -L -n --thresholds >"$w/listing" 2>&1 || lvs_die "'ipvsadm -L -n --thresholds' failed: see $w/listing"
  fix=$(lvs_thresholds_plan "$LVS_HERE/$LVS_RULES" "$tfile" "$w/listing") || lvs_die "cannot compare the thresholds (see above)"
  [[ -z $fix ]] || lvs_die "the thresholds do not match $tfile after applying them"$'\n'"${LVS_IPVS_ERRORS}still to do:"$'\n'"$fix"
}

# --- templates/host/remove.sh ---------------------------------------------------------------------
# remove.sh: removal of what this build no longer describes (step remove). Uses every part
# that adds something: common.sh, record.sh, net.sh, kernel.sh, files.sh, nft.sh, sync.sh.
#
# Only lines of the record are candidates, in the reverse order of setup: the table first
# (lvs_ipvs does that), then addresses, routes, devices, sysctls, files.
lvs_remove_stale() {
  lvs_step remove
  local -A want=()
  local entry cidr dev key line family via old f
  local -a fields
  for entry in "${LVS_ADDRESSES[@]}"; do
    read -r cidr dev _ <<<"$entry"
    want["addr"$'\t'"$cidr"$'\t'"$dev"]=1
  done
  for entry in "${LVS_DUMMIES[@]}"; do want["dummy"$'\t'"$entry"]=1; done
  for entry in "${LVS_ROUTES[@]}"; do want["route"$'\t'"${entry%% *}"]=1; done
  for entry in "${LVS_SYSCTLS[@]}"; do want["sysctl"$'\t'"${entry% *}"]=1; done
  for entry in "${LVS_FILES[@]}"; do want["file"$'\t'"/${entry% *}"]=1; done
  for entry in "${LVS_UNITS[@]}"; do want["link"$'\t'"$LVS_WANTS/${entry##*/}"]=1; done
  [[ -z ${LVS_NFT:-} ]] || want["nft"$'\t'"$LVS_NFT_NAME"]=1
  [[ -z ${LVS_TIMEOUTS:-} ]] || want["timeouts"$'\t'set]=1
  for entry in "${LVS_SYNC[@]}"; do want["sync"$'\t'"${entry%% *}"]=1; done
  for entry in "${LVS_FOU[@]}"; do want["fou"$'\t'"$entry"]=1; done
  # The host's own addresses are never removed, even where an older lvsgen added them.
  for entry in "${LVS_HOST_ADDRESSES[@]}"; do
    read -r cidr dev <<<"$entry"
    want["addr"$'\t'"$cidr"$'\t'"$dev"]=1
  done
  local addrs=$LVS_ADDRS
  local kind
  local -a stale=()
  # One pass over the record finds what is stale; usually nothing is.
  for key in "${!LVS_REC[@]}"; do
    [[ -n ${want[$key]-} ]] || stale+=("$key")
  done
  ((${#stale[@]} > 0)) || return 0
  # The forwarding policy goes after the sysctls: ip_forward is off again before it is.
  for kind in sync fou addr route dummy sysctl timeouts nft link file; do
    [[ $kind == route ]] && lvs_ip_flush # the addresses go first
    [[ $kind == sysctl ]] && lvs_ip_flush # then the devices
    for key in "${stale[@]}"; do
      [[ $key == "$kind"$'\t'* ]] || continue
      line=${LVS_REC[$key]}
      IFS=$'\t' read -r -a fields <<<"$line"
      case $kind in
        addr)
          [[ $addrs == *$'\n'"${fields[1]} ${fields[2]}"$'\n'* ]] && lvs_ip addr del "${fields[1]}" dev "${fields[2]}"
          ;;
        route)
          family=${fields[1]} via=${fields[2]} dev=${fields[3]} old=${fields[4]-}
          f=$(ip "$family" route show default 2>/dev/null) || f=
          if [[ $f == "default via $via dev $dev"* ]]; then
            if [[ $old == "default via "* ]]; then
              # shellcheck disable=SC2086 # the route the host had before, word by word
              lvs_run ip "$family" route replace ${old}
            else
              lvs_run ip "$family" route del default via "$via" dev "$dev"
            fi
          fi
          ;;
        dummy)
          ip link show dev "${fields[1]}" >/dev/null 2>&1 && lvs_ip link del "${fields[1]}"
          ;;
        sysctl)
          # Put back the value the host had, unless someone changed it since.
          lvs_sysctl_path "${fields[1]}"
          f=$LVS_PATH
          if [[ -r $f ]]; then
            read -r old <"$f"
            [[ $old == "${fields[3]}" ]] && lvs_sysctl_set "${fields[1]}" "${fields[2]}"
          fi
          ;;
        fou)
          if [[ -d /sys/module/fou ]]; then
            f=$(ip fou show 2>/dev/null) || f=
            [[ $'\n'$f$'\n' == *$'\n'"port ${fields[1]} gue"[$' \n']* ]] && lvs_run ip fou del port "${fields[1]}"
          fi
          ;;
        sync)
          if [[ -r $LVSGEN_PROC_IPVS ]]; then
            lvs_sync_read
            lvs_sync_running "${fields[1]}"
            [[ -z $LVS_LINE ]] || lvs_run ipvsadm --stop-daemon "${fields[1]}"
          fi
          ;;
        timeouts)
          # Put back the host's values, unless someone changed them since (or ip_vs is gone).
          if [[ -r $LVSGEN_PROC_IPVS ]]; then
            lvs_timeouts_read
            # shellcheck disable=SC2086 # three numbers
            [[ $LVS_TIMEOUTS_NOW == "${fields[3]}" ]] && lvs_run ipvsadm --set ${fields[2]}
          fi
          ;;
        nft)
          # shellcheck disable=SC2086 # family and name, two words
          if nft list table ${fields[1]} >/dev/null 2>&1; then
            lvs_run nft delete table ${fields[1]}
          fi
          ((LVS_DRY_RUN)) || rm -f -- "$LVSGEN_RUN/table.nft" "$LVSGEN_RUN/table.list" "$LVSGEN_RUN/table.union.nft"
          ;;
        link | file)
          if [[ -e ${fields[1]} || -L ${fields[1]} ]]; then
            lvs_run rm -f -- "${fields[1]}"
            # shellcheck disable=SC2034 # read in files.sh
            if [[ ${fields[1]} == /etc/systemd/system/* ]]; then LVS_UNITS_CHANGED=1; fi
          fi
          # and its twin in the boot copy
          if [[ $kind == file && -f $LVSGEN_STATE/host${fields[1]} && ! $LVS_HERE -ef $LVSGEN_STATE/host ]]; then
            lvs_run rm -f -- "$LVSGEN_STATE/host${fields[1]}"
          fi
          ;;
      esac
      ((LVS_DRY_RUN)) || lvs_record_drop "$key"
    done
  done
}

# --- templates/host/main.sh -----------------------------------------------------------------------
# main.sh: the arguments (lvs_parse_args) and the run (lvsgen_main), which goes through the
# steps in order. A step that fails is named in the message ("error in step NAME"); its code
# is in the part this table gives:
#   preflight                         preflight.sh
#   modules, sysctls, timeouts        kernel.sh
#   nftables                          nft.sh
#   files, copy, boot-unit            files.sh
#   ipvs, drain                       ipvs.sh
#   thresholds                        thresholds.sh
#   fou, devices, addresses, routes   net.sh
#   sync-daemon                       sync.sh
#   remove                            remove.sh
#   start, finish                     main.sh (the arguments; the record and the summary)
# Uses every other part.
lvs_usage() {
  printf '%s\n' \
    "usage: setup.sh [--dry-run] [--force] [--no-drain] [--boot | --boot-network]" \
    "  --dry-run   print every command that would run, change nothing;" \
    "              exit 0 when there is nothing to do, 2 when changes are pending" \
    "  --force     run even though the hostname is not '$LVS_HOSTNAME'" \
    "  --no-drain  remove real servers at once instead of draining them first" \
    "  --boot      what lvsgen.service runs early at boot, before the network: modules," \
    "              sysctls, the IPVS table, lvsgen's own devices and their addresses" \
    "  --boot-network  what lvsgen-network.service runs once the network is up: all" \
    "              but the files (the addresses and routes on the host's NIC)"
}

lvs_parse_args() {
  while (($# > 0)); do
    # shellcheck disable=SC2034 # LVS_FORCE and LVS_DRAIN are read in preflight.sh and ipvs.sh
    case $1 in
      --dry-run) LVS_DRY_RUN=1 ;;
      --force) LVS_FORCE=1 ;;
      --no-drain) LVS_DRAIN=0 ;;
      --boot) LVS_BOOT=1 LVS_FORCE=1 ;;
      --boot-network) LVS_BOOT=2 LVS_FORCE=1 ;;
      -h | --help) lvs_usage; exit 0 ;;
      *) lvs_usage >&2; lvs_die "unknown argument '$1'" ;;
    esac
    shift
  done
}

# lvsgen_main ARG...: the run. setup.sh calls it with its own arguments.
lvsgen_main() {
  : "${LVS_TABLE_OWNED:=1}" "${LVS_DRAIN_TIMEOUT:=0}" "${LVS_TIMEOUTS:=}" # directors set these
  set -o errtrace
  trap 'lvs_die "line $LINENO: command failed: $BASH_COMMAND"' ERR
  lvs_parse_args "$@"
  lvs_preflight
  lvs_record_load
  # The table before the devices and addresses: a director's new VIP never answers before
  # its services exist, at boot or on a first run.
  if ((LVS_BOOT)); then
    lvs_modules
    lvs_nftables
    lvs_sysctls
    lvs_timeouts
    lvs_ipvs
    lvs_thresholds
    lvs_nftables_finish
    lvs_fou
    lvs_devices
    lvs_addresses
    if ((LVS_BOOT != 1)); then
      lvs_routes
      lvs_sync
    fi
  else
    lvs_modules
    lvs_nftables
    lvs_sysctls
    lvs_timeouts
    # The table is loaded (a first run) or planned while the files are installed: the plan
    # starts once the files' sums are known (it checks the image against the rules file's).
    lvs_ipvs_early
    lvs_files_inspect
    lvs_ipvs_plan_early
    lvs_files
    lvs_enable_unit
    lvs_ipvs
    lvs_thresholds
    lvs_nftables_finish
    lvs_fou
    lvs_devices
    lvs_addresses
    lvs_routes
    lvs_sync
    lvs_remove_stale
    lvs_systemd_reload
    lvs_copy
  fi
  lvs_step finish
  lvs_record_save
  lvs_sums_save
  if ((LVS_DRY_RUN)); then
    if ((LVS_CHANGES == 0)); then
      lvs_say "dry run: no changes: already in the described state"
      exit 0
    fi
    lvs_say "dry run: $LVS_CHANGES change(s) would be made"
    exit 2
  elif ((LVS_CHANGES == 0)); then
    lvs_say "no changes: already in the described state"
  else
    # shellcheck disable=SC2153 # LVS_HOST: setup.sh sets it
    lvs_say "$LVS_CHANGES change(s) made; host '$LVS_HOST' of cluster '$LVS_CLUSTER' is in the described state"
  fi
}
