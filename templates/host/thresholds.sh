# shellcheck shell=bash
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
