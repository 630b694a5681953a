# shellcheck shell=bash
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
