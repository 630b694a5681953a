# shellcheck shell=bash
# thresholds.sh: the connection thresholds of real servers (step thresholds), after the
# table. Uses common.sh, record.sh and ipvs.sh (lvs_ipvs_batch).
#
# 'ipvsadm -S' never prints -x/-y, so the rules file cannot hold them and the table's plan does
# not see them; an edit of a real server (-e) without them also sets them to 0. After the table,
# LVS_AWK_THRESHOLDS compares 'ipvsadm -L -n --thresholds' with the thresholds file for every
# real server of a described service (one the file does not name must be at 0 0) and prints
# the -e lines that put each right, with the real server's attributes from the rules file.
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_THRESHOLDS='
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
  local w=$LVSGEN_RUN/plan fix err rc=0
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
  lvs_ipvs_batch "thresholds" "$w/thresholds.fix" || rc=$?
  ipvsadm -L -n --thresholds >"$w/listing" 2>&1 || lvs_die "'ipvsadm -L -n --thresholds' failed: see $w/listing"
  fix=$(lvs_thresholds_plan "$LVS_HERE/$LVS_RULES" "$tfile" "$w/listing") || lvs_die "cannot compare the thresholds (see above)"
  [[ -z $fix ]] || lvs_die "the thresholds do not match $tfile after applying them"$'\n'"${LVS_IPVS_ERRORS}still to do:"$'\n'"$fix"
}
