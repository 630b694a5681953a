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
