# shellcheck shell=bash
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
