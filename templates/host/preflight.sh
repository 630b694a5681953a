# shellcheck shell=bash
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
