# shellcheck shell=bash
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
