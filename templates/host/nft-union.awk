# nft-union.awk: the union of two files of the nftables table inet lvsgen, for lvs_nft_union
# (nft.sh), which runs it as LVS_AWK_NFT_UNION (its name in the engine):
#   awk -f nft-union.awk file=1 LOADED file=2 NEW
# LOADED is the table loaded now, NEW the new file, both as lvsgen writes them (a preamble, then
# "table inet NAME {" with set and chain blocks, one element or rule a line). Prints the
# preamble of NEW, then the table with every block and line of either: sets first, then
# chains, the lines of LOADED before the new ones (so that a port whose mark changes keeps its
# old mark until the service that has it is gone); "flags interval" is kept when either has it.
# Exit status 0: each has something the other lacks; 3: NEW only takes things away; 4: it only
# adds (or changes nothing).
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
