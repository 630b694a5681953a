# shellcheck shell=bash
# ipvs.sh: the IPVS table (steps ipvs and drain): read once, the delta applied in two
# 'ipvsadm -R' batches around the drain, then verified; the kernel's HZ; the marker of options
# /proc cannot show. Uses common.sh, record.sh and files.sh (the sums of the rules file and
# its image).
#
# Lines are in 'ipvsadm -S -n' form. A service is named by the words after -A up to its
# options ("-t 192.0.2.1:80", "-f 7 -6"); a real server by its service and its -r address.
#
# The awk code below is shared by the functions after it: LVS_AWK_PROC reads
# /proc/net/ip_vs into 'ipvsadm -S -n' form, LVS_AWK_PLAN computes the delta.

# proc_line(): the current /proc/net/ip_vs line ($0) in 'ipvsadm -S -n' form ("" for the
# header). With counts, a real-server line ends in its active connection count. Sets
# proc_err to 3 (a persistent service and no HZ) or 2 (an unknown protocol), and fwm when it
# meets a firewall-mark service, whose family /proc does not show.
# /proc does not show: tunnel types (read as ipip, the default), scheduler flags (-b),
# persistence engines (--pe), one-packet scheduling on IPv6 services, thresholds.
# showable(): can /proc show everything the current 'ipvsadm -S -n' line ($0) says? Only
# lines in the exact form and option order ipvsadm prints qualify; anything else is read
# with ipvsadm -S -n.
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_PROC='
# Two hex digits at a time from a table, and every address converted once: /proc has
# thousands of lines, and awk is slow at the digit-by-digit way.
function hex_init(   i, d, a, b) { d = "0123456789ABCDEF"; for (i = 0; i < 256; i++) { a = substr(d, int(i / 16) + 1, 1); b = substr(d, i % 16 + 1, 1); HX[a b] = i }; hex_ready = 1 }
function hexval(h,   i, v) { if (!hex_ready) hex_init(); h = toupper(h); if (length(h) % 2) h = "0" h; v = 0; for (i = 1; i <= length(h); i += 2) v = v * 256 + HX[substr(h, i, 2)]; return v }
function v4(h) { if (!hex_ready) hex_init(); h = toupper(h); return HX[substr(h, 1, 2)] "." HX[substr(h, 3, 2)] "." HX[substr(h, 5, 2)] "." HX[substr(h, 7, 2)] }
function v6(full,   g, i, best, bestlen, run, start, out, w) {
  split(full, g, ":")
  for (i = 1; i <= 8; i++) w[i] = hexval(g[i])
  best = 0; bestlen = 0; run = 0
  for (i = 1; i <= 8; i++) {
    if (w[i] == 0) { if (run == 0) start = i; run++; if (run > bestlen) { best = start; bestlen = run } }
    else run = 0
  }
  if (bestlen < 2) { best = 0; bestlen = 0 }
  # glibc inet_ntop: an IPv4-compatible or -mapped address ends in a dotted quad
  if (best == 1 && (bestlen == 6 || (bestlen == 5 && w[6] == 65535))) {
    out = (bestlen == 5 ? "::ffff:" : "::")
    return out int(w[7] / 256) "." (w[7] % 256) "." int(w[8] / 256) "." (w[8] % 256)
  }
  out = ""
  for (i = 1; i <= 8; i++) {
    if (bestlen && i == best) { out = out "::"; i += bestlen - 1; continue }
    if (out != "" && substr(out, length(out)) != ":") out = out ":"
    out = out sprintf("%x", w[i])
  }
  return out
}
function ap(s,   a, port, r) {
  if (s in AP) return AP[s]
  if (substr(s, 1, 1) == "[") { a = substr(s, 2, index(s, "]") - 2); port = substr(s, index(s, "]") + 2); r = "[" v6(a) "]:" hexval(port) }
  else r = v4(substr(s, 1, 8)) ":" hexval(substr(s, 10, 4))
  AP[s] = r
  return r
}
function swap32(h) { return substr(h, 7, 2) substr(h, 5, 2) substr(h, 3, 2) substr(h, 1, 2) }
function proc_line(counts,   fwd, line, proto, flag, v6svc, ops, i, plen) {
  if ($1 == "IP" || $1 == "Prot" || ($1 == "->" && $2 == "RemoteAddress:Port")) return ""
  if ($1 == "->") {
    fwd = ($3 == "Masq") ? "-m" : ($3 == "Tunnel") ? "-i" : "-g"
    line = "-a " proc_svc " -r " ap($2) " " fwd " -w " $4 ($3 == "Tunnel" ? " --tun-type ipip" : "")
    return line (counts == 1 ? " " $5 : "")
  }
  proto = $1
  if (proto == "FWM") { proc_svc = "-f " hexval($2); v6svc = 0; fwm = 1 }
  else {
    flag = (proto == "TCP") ? "-t" : (proto == "UDP") ? "-u" : (proto == "SCTP") ? "--sctp-service" : ""
    if (flag == "") { printf "lvsgen: /proc/net/ip_vs: unknown protocol %s\n", proto > "/dev/stderr"; proc_err = 2; return "" }
    proc_svc = flag " " ap($2); v6svc = (substr($2, 1, 1) == "[")
  }
  line = "-A " proc_svc " -s " $3
  ops = 0
  for (i = 4; i <= NF; i++) {
    if ($i == "ops") ops = 1
    else if ($i == "persistent") {
      if (hz <= 0) { proc_err = 3; return "" }
      line = line " -p " int($(i + 1) / hz)
      if (v6svc) { plen = hexval(swap32($(i + 2))); if (plen != 128) line = line " -M " plen }
      else if ($(i + 2) != "FFFFFFFF") line = line " -M " v4($(i + 2))
      i += 2
    }
  }
  if (ops) line = line " -o"
  return line
}
function showable() {
  # One match per line, no field splitting: the options in the order ipvsadm -S prints them.
  if (substr($0, 1, 3) == "-A ")
    return $0 ~ /^-A (-t|-u|--sctp-service) [^ ]+ -s [^ ]+( -p [0-9]+)?( -M [^ ]+)?( -o)?$/ && !($0 ~ /^-A [^ ]+ \[/ && $0 ~ / -o$/)
  return $0 ~ /^-a (-t|-u|--sctp-service) [^ ]+ -r [^ ]+ -[gmi] -w [0-9]+( --tun-type ipip)?$/
}
'

# LVS_AWK_PLAN: the delta, from file 1 (DESIRED), file 2 (LIVE, in 'ipvsadm -S -n' form, or
# /proc/net/ip_vs when fmt is "proc") and file 3 (RECORDED: services lvsgen added, one name
# a line). Without split, it prints tagged lines:
#   A <ipvsadm line>   phase 1, one 'ipvsadm -R': add or edit services, then real servers,
#                      then set the real servers that go to weight 0 (drain)
#   W <service> <rs>   wait until that real server has no active connection
#   R <ipvsadm line>   phase 2, one 'ipvsadm -R': delete real servers, then services
# With split=DIR it writes them to DIR/plan, the bare lines to DIR/A, DIR/W and DIR/R, what
# to print to DIR/show (the commands as run, or as they would run with dry=1), and the
# record of services as it must be before (DIR/services.before) and after (DIR/services.after)
# the change, and the names of the services the A and R lines touch (DIR/touched); it prints
# the counts "A W R ADDED DELETED".
# With img (the image of DESIRED, ipvsadm.proc in the host folder, see lvsgen/procimage.py) whose first
# line ends in imgkey (DESIRED's MD5 sum) and fmt "proc", DESIRED is not read: each /proc line is
# looked up in the image by its words, and only the lines that match nothing are converted. A
# table equal to the file is then settled by lookups alone, and the plan is the same.
# With file 0 (ONLY: service names, one a line, given first) the plan is scoped: lines of
# other services, in DESIRED and LIVE alike, are skipped unread. The plan is then the full
# plan restricted to those services; the verify after a change reads back only what it touched.
# Exit 5: with fmt "proc", DESIRED uses something /proc cannot show; 3 and 4: see proc_line.
# With an image, file 0 is ignored (lvs_ipvs_diff gives a scoped plan no image).
# A service is deleted if it is not described and either owned is 1 or it is in RECORDED.
# A described service is lvsgen's with all of its real servers.
# shellcheck disable=SC2016 # awk code: $ is awk's
LVS_AWK_PLAN='
function rest(from,   i, s) { s = ""; for (i = from; i <= NF; i++) s = s (s == "" ? "" : " ") $i; return s }
function bad(what) { printf "lvsgen: %s line %d: cannot read: %s\n", what, lineno, $0 > "/dev/stderr"; failed = 2; exit 2 }
function svcname(   i, s) { sname_end = 3; if ($2 == "-f" && $4 == "-6") sname_end = 4; s = $2; for (i = 3; i <= sname_end; i++) s = s " " $i; return s }
function take(line,   k, r) {
  # one line of file 1 or 2, in $0, already in ipvsadm -S -n form
  if ($1 == "-A") {
    if (NF < 5) bad(file == 1 ? "desired" : "live")
    k = svcname()
    if (file == 1) { dsvc[k] = rest(sname_end + 1); dso[++nds] = k }
    else { lsvc[k] = rest(sname_end + 1); lso[++nls] = k }
    return
  }
  if ($1 == "-a") {
    k = svcname()
    if (NF < sname_end + 4 || $(sname_end + 1) != "-r") bad(file == 1 ? "desired" : "live")
    r = $(sname_end + 2)
    if (file == 1) { ddst[k SUBSEP r] = rest(sname_end + 3); ddo[++ndd] = k SUBSEP r }
    else { ldst[k SUBSEP r] = rest(sname_end + 3); ldo[++nld] = k SUBSEP r }
    return
  }
  bad(file == 1 ? "desired" : "live")
}
BEGIN { if (img != "" && fmt == "proc") img_load() }
# img_load: IK[key] = line number (the key of a real server is the key of its service, SUBSEP,
# its own). The lines themselves are not kept: a live line that matches deletes its key, and
# only when keys are left over (the table differs) is the image read again for their lines.
# Any surprise: no image.
function img_load(   l, h, n, t, k, cur) {
  if ((getline l < img) <= 0 || substr(l, 1, 1) != "#" || (n = split(l, h, " ")) < 2 || h[n] != imgkey) { close(img); return }
  imgok = 1
  while ((getline l < img) > 0) {
    t = index(l, "\t"); if (!t) { imgok = 0; break }
    k = substr(l, 1, t - 1); nimg++
    if (substr(k, 1, 3) == "-> ") {
      if (cur == "") { imgok = 0; break }
      k = cur SUBSEP k
    } else {
      if (!index(substr(l, t + 1), "\t")) { imgok = 0; break }  # a service line has its name
      if (index(k, "@")) {  # a persistence timeout in seconds: /proc shows jiffies
        if (hz <= 0 || !match(k, /@[0-9]+/)) { imgok = 0; break }
        k = substr(k, 1, RSTART - 1) (substr(k, RSTART + 1, RLENGTH - 1) * hz) substr(k, RSTART + RLENGTH)
      }
      cur = k
    }
    IK[k] = nimg
  }
  close(img)
  if (!imgok) { split("", IK); nimg = 0 }
}
# img_read(): the next line of the image after its first, as its ipvsadm line (and, for a
# service, its name after a tab) in IMGL, its number in IMGN; 0 at the end.
function img_read(   l) {
  if (!imgn) getline l < img  # the header
  if ((getline l < img) <= 0) { close(img); imgn = 0; return 0 }
  IMGN = ++imgn; IMGL = substr(l, index(l, "\t") + 1)
  return 1
}
# described(NAME): does the desired table have that service? With an image, the names are
# read from it the first time this is asked: a change of a weight never asks.
function described(name) {
  if (imgok && !dnready) {
    dnready = 1
    while (img_read()) if (substr(IMGL, 1, 3) == "-A ") DN[substr(IMGL, index(IMGL, "\t") + 1)] = 1
  }
  return (name in DN)
}
# img_plan: every image line no live line matched (its key is left in IK) is a desired line to
# read, every live line that matched nothing (kept in RAW, after the line of its service, which
# gives the name) is converted and read.
function img_plan(   i, k, line, l) {
  # How well the image matched, for whoever wants to know (the VM tests do): "MATCHED IMAGE LIVE".
  if (split_dir != "") { printf "%d %d %d\n", nhit, nimg, nlive > (split_dir "/image"); close(split_dir "/image") }
  if (nhit == nimg && nlive == nimg) { imgmatch = 1; return }
  for (k in IK) LEFT[IK[k]] = 1
  while (img_read()) {
    if (!(IMGN in LEFT)) continue
    l = IMGL
    if (substr(l, 1, 3) == "-A ") l = substr(l, 1, index(l, "\t") - 1)
    file = 1; lineno = IMGN + 1; $0 = l; take()
  }
  for (i = 1; i <= nraw; i++) {
    $0 = RAW[i]
    line = proc_line(0)  # a service line: also the name of the real servers after it
    if (proc_err) { failed = proc_err; exit proc_err }
    if (line == "" || (i in CTX)) continue
    file = 2; lineno = RAWN[i]; $0 = line; take()
  }
}
file == 3 { if ($0 != "") rec[$0] = 1; next }
file == 0 { if (!imgok && $0 != "") { ONLY[$0] = 1; ONLYP[procname($1, $2)] = 1 }; scoped = !imgok; next }
# procname(FLAG, ADDR:PORT): an IPv4 service as /proc names it ("TCP C0000201:0050"), so that
# the verify skips the services it did not touch unconverted. IPv6 ones are converted.
function procname(flag, addr,   a, q) {
  if (substr(addr, 1, 1) == "[" || split(addr, q, ":") != 2 || split(q[1], a, ".") != 4) return ""
  return ((flag == "-t") ? "TCP" : (flag == "-u") ? "UDP" : "SCTP") " " sprintf("%02X%02X%02X%02X:%04X", a[1], a[2], a[3], a[4], q[2])
}
# LIVE comes before DESIRED. /proc lines are looked up in the image if there is one, else
# kept raw and converted by live_read().
# Scoped, a line is kept only if its service may be in scope: an IPv4 one by its /proc name,
# IPv6 and firewall-mark ones always (live_read converts them, decides the IPv6 ones by name,
# and a firewall-mark one sends the read to ipvsadm -S -n, exit 4). Skipping the rest here,
# unstored, is what makes the verify after a small change cost little on a large table.
file == 2 && fmt == "proc" && scoped {
  if ($1 == "->") { if (keepsvc) RAW[++nraw] = $0; next }
  keepsvc = ($1 == "IP" || $1 == "Prot" || $1 == "FWM" || substr($2, 1, 1) == "[" || (($1 " " $2) in ONLYP))
  if (keepsvc) RAW[++nraw] = $0
  next
}
file == 2 && fmt == "proc" && !imgok { RAW[++nraw] = $0; next }
# With the image: the key of the line (see img_load), looked up, and deleted when found. This
# runs once per line of the table, the cost of a run that changes nothing; a line that matches
# nothing is kept (RAW, its line number in RAWN), after the line of its service (CTX: only for
# the name, unless it did not match either). Rebuilding a service line ($1 = $1) makes its
# spaces single.
file == 2 && fmt == "proc" {
  if ($1 == "->") {
    if ($2 == "RemoteAddress:Port") next
    nlive++
    if ((k = cursk SUBSEP $1 " " $2 " " $3 " " $4) in IK) { delete IK[k]; nhit++; next }
    if (cursraw == "") next  # no service line before it (not in a real table)
    if (!ctxkept) { RAW[++nraw] = cursraw; RAWN[nraw] = cursn; CTX[nraw] = 1; ctxkept = 1 }
    RAW[++nraw] = $0; RAWN[nraw] = FNR
    next
  }
  if ($1 == "IP" || $1 == "Prot") next
  cursraw = $0; cursn = FNR; ctxkept = 0
  $1 = $1; cursk = $0; nlive++
  if (cursk in IK) { delete IK[cursk]; nhit++; next }
  RAW[++nraw] = cursraw; RAWN[nraw] = FNR; ctxkept = 1
  next
}
file == 1 && imgok { nextfile }
function live_read(   i, keep) {
  lived = 1
  if (fmt != "proc") return
  keep = $0
  for (i = 1; i <= nraw; i++) {
    $0 = RAW[i]
    if ($1 == "IP" || $1 == "Prot" || ($1 == "->" && $2 == "RemoteAddress:Port")) continue  # the header
    if (scoped && $1 == "->" && !inscope) continue  # a real server of a service out of scope
    line = proc_line(0)
    if (proc_err) { failed = proc_err; exit proc_err }
    if (line == "") continue
    if (scoped && $1 != "->") { inscope = (proc_svc in ONLY); if (!inscope) continue }
    L2[++n2] = line; LV[line] = i
  }
  $0 = keep
}
file == 1 && !lived { live_read() }
/^[ \t]*$/ || /^#/ { next }
scoped && !(svcname() in ONLY) { next }
file == 1 && fmt == "proc" && !showable() { failed = 5; exit 5 }
# Lines are kept as they are; the common case, a table equal to the file, is settled by
# comparing whole lines, and only a difference pays for reading them field by field.
file == 1 {
  if (!($0 in D)) distinct++
  D[$0] = FNR; L1[++n1] = $0
  if (substr($0, 1, 3) == "-A ") DN[svcname()] = 1  # every described service, by name
  next
}
{ L2[++n2] = $0; LV[$0] = FNR }
function dest(k, attrs,   p) { split(k, p, SUBSEP); return p[1] " -r " p[2] " " attrs }
function zero(attrs,   a) { a = attrs; if (!sub(/-w [0-9]+/, "-w 0", a)) a = a " -w 0"; return a }
function weight(attrs) { if (match(attrs, /-w [0-9]+/)) return substr(attrs, RSTART + 3, RLENGTH - 3) + 0; return 1 }
function out(tag, line,   w, k) {
  n[tag]++
  if (tag != "W") { split(line, w, " "); k = w[2] " " w[3]; if (w[2] == "-f" && w[4] == "-6") k = k " -6"; TOUCH[k] = 1 }
  if (split_dir == "") { print tag " " line; return }
  print tag " " line > (split_dir "/plan")
  print line > (split_dir "/" tag)
  if (tag == "W") show[++nshow] = "lvsgen[" host "]: " (dry ? "would wait" : "waiting") " up to " timeout " s for the active connections of " line " to end"
  else show[++nshow] = "lvsgen[" host "]: " (dry ? "would run: ipvsadm " : "+ ipvsadm ") line
}
END {
  if (failed) exit failed
  if (imgok) { img_plan(); if (failed) exit failed }
  else if (!lived) { live_read(); if (failed) exit failed }
  if (imgmatch) { if (split_dir == "") exit 0; print "0 0 0 0 0"; exit 0 }
  if (fmt == "proc" && fwm) exit 4
  for (i = 1; i <= n2; i++) if (L2[i] in D) same++
  if (!imgok && !(distinct == n1 && n1 == n2 && same == n2)) {
    # Only lines that are not in both need reading, and every described service name.
    for (i = 1; i <= n1; i++) if (!(L1[i] in LV)) { file = 1; lineno = D[L1[i]]; $0 = L1[i]; take() }
    for (i = 1; i <= n2; i++) if (!(L2[i] in D)) { file = 2; lineno = LV[L2[i]]; $0 = L2[i]; take() }
  }
  for (i = 1; i <= nds; i++) { k = dso[i]
    if (!(k in lsvc)) { out("A", "-A " k " " dsvc[k]); added[k] = 1 }
    else if (lsvc[k] != dsvc[k]) out("A", "-E " k " " dsvc[k])
  }
  for (i = 1; i <= ndd; i++) { k = ddo[i]
    if (!(k in ldst)) out("A", "-a " dest(k, ddst[k]))
    else if (ldst[k] != ddst[k]) out("A", "-e " dest(k, ddst[k]))
  }
  for (i = 1; i <= nls; i++) { k = lso[i]
    if (!described(k) && (owned == 1 || (k in rec))) gone[k] = 1
  }
  for (i = 1; i <= nld; i++) { k = ldo[i]
    if (k in ddst) continue
    split(k, p, SUBSEP)
    if (!described(p[1]) && !(p[1] in gone)) continue
    if (drain == 1) {
      if (weight(ldst[k]) != 0) out("A", "-e " dest(k, zero(ldst[k])))
      waits[++nw] = p[1] " " p[2]
    }
    if (described(p[1])) removes[++nr] = "-d " p[1] " -r " p[2]
  }
  for (i = 1; i <= nw; i++) out("W", waits[i])
  for (i = 1; i <= nr; i++) out("R", removes[i])
  for (i = 1; i <= nls; i++) if (lso[i] in gone) { out("R", "-D " lso[i]); ndel++ }
  if (split_dir == "") exit 0
  for (i = 1; i <= nshow; i++) print show[i] > (split_dir "/show")
  for (k in TOUCH) print k > (split_dir "/touched")
  for (k in rec) { print k > (split_dir "/services.before"); if (!(k in gone)) print k > (split_dir "/services.after") }
  for (k in added) if (!(k in rec)) { print k > (split_dir "/services.before"); print k > (split_dir "/services.after") }
  printf "%d %d %d %d %d\n", n["A"], n["W"], n["R"], length(added), ndel + 0
}
'

# lvs_ipvs_plan DESIRED LIVE RECORDED OWNED DRAIN [FMT [SPLIT_DIR [ONLY]]]: see LVS_AWK_PLAN.
lvs_ipvs_plan() {
  local -a scope=()
  [[ -z ${8:-} ]] || scope=(file=0 "$8")
  LC_ALL=C awk -v owned="$4" -v drain="$5" -v fmt="${6:-save}" -v split_dir="${7:-}" -v hz="${LVS_HZ:-0}" \
    -v host="${LVS_HOST:-}" -v dry="$LVS_DRY_RUN" -v timeout="${LVS_DRAIN_TIMEOUT:-0}" \
    -v img="${LVS_IMG_IN:-}" -v imgkey="${LVS_IMG_KEY:-}" \
    "$LVS_AWK_PROC$LVS_AWK_PLAN" "${scope[@]}" file=2 "$2" file=1 "$1" file=3 "$3"
}

# lvs_ipvs_proc [HZ] [COUNTS]: /proc/net/ip_vs in 'ipvsadm -S -n' form, read in one pass.
# Status 3: a persistent service and no HZ; 2: an unknown protocol; 4: the lines are all
# printed, but one is a firewall-mark service, which must be read with ipvsadm -S -n.
lvs_ipvs_proc() {
  LC_ALL=C awk -v hz="${1:-0}" -v counts="${2:-0}" "$LVS_AWK_PROC"'
    { line = proc_line(counts); if (proc_err) exit proc_err; if (line != "") print line }
    END { if (proc_err) exit proc_err; if (fwm) exit 4 }
  ' "$LVSGEN_PROC_IPVS"
}

# lvs_ipvs_proc_can_show DESIRED: does /proc/net/ip_vs show every option DESIRED uses? The
# plan calls showable() itself; this is the same check on a whole file, for the tests.
lvs_ipvs_proc_can_show() {
  LC_ALL=C awk "$LVS_AWK_PROC"'/^[ \t]*$/ || /^#/ { next } { if (!showable()) exit 1 }' "$1"
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
# DIR (see LVS_AWK_PLAN); sets LVS_COUNTS. The live table is read from /proc/net/ip_vs in the
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
  # The image is used only with the file it was made from: its sum, known once lvs_files
  # inspected the files, is taken here on the paths that do not (boot, a first run's load).
  if [[ -n $image && -z ${LVS_SUM[$desired]-} ]]; then lvs_inspect_files "$desired"; fi
  lvs_ipvs_hidden_of "$1" # of the whole file, even when a scope narrowed DESIRED
  if [[ -r $LVSGEN_PROC_IPVS ]] && ((LVS_IPVS_HIDDEN == 0)) && [[ ! -e $LVSGEN_STATE/ipvs-hidden ]]; then
    lvs_kernel_hz
    # The image (see LVS_AWK_PLAN), if it was made from this very file.
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
# table that every run makes) in a background subshell, started by the files step once it has
# the sums (the image is checked against the rules file's) and while it installs the files;
# lvs_ipvs_planned takes its results. The subshell holds the lock (fd 9) until it ends, even if
# this run dies meanwhile.
LVS_IPVS_PLAN_BG=''
lvs_ipvs_plan_early() {
  [[ -n $LVS_RULES ]] || return 0
  ((LVS_IPVS_BEGUN)) && return 0
  local w=$LVSGEN_RUN/plan
  : >"$w/planned"
  (
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
