# shellcheck shell=bash
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
