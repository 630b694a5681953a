# shellcheck shell=bash
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
