# shellcheck shell=bash
# nft.sh: the nftables table inet lvsgen, a NAT director's forwarding policy and the firewall
# marks of firewall-mark services (step nftables). Uses common.sh and record.sh.
#
# The table, loaded by one 'nft -f' (one transaction that replaces the whole table). Nothing is
# done when the file is the one this boot loaded last and the kernel still lists the table as
# it did right after; anything else (a reboot, a changed file, a hand edit of the table, a
# deleted table) loads it again. One 'nft' process when nothing changed.
#
# A change is made in two steps, like the IPVS table's: before the table, the union of what is
# loaded and what the file says (LVS_AWK_NFT_UNION), so that nothing is taken away while IPVS
# still uses it: a NAT real server that is drained keeps its replies' way out, and a port that
# leaves a firewall-mark service keeps its mark until the service that takes it over is there.
# After the table (lvs_nftables_finish), the file as it is.
LVS_NFT_NAME='inet lvsgen'
LVS_NFT_PENDING=0

# LVS_AWK_NFT_UNION: file 1 the table loaded now, file 2 the new file, both as lvsgen writes
# them (a preamble, then 'table inet NAME {' with 'set' and 'chain' blocks, one element or rule a
# line). Prints the new file's preamble, then the table with every block and line of either:
# sets first, then chains, the loaded table's lines before the new ones (so that a port whose
# mark changes keeps its old mark until the service that has it is gone); 'flags interval' is
# kept when either has it. Exit status 0: each has something the other lacks; 3: the new file
# only takes things away; 4: it only adds (or changes nothing).
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_NFT_UNION='
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

# lvs_nft_union LOADED NEW: print their union; the status says which way they differ (see
# LVS_AWK_NFT_UNION).
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
