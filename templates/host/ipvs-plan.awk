# ipvs-plan.awk: the delta of the IPVS table (in the engine: LVS_AWK_IPVS_PLAN). It needs the
# functions of ipvs-proc.awk; lvs_ipvs_plan (ipvs.sh) runs the two as
#   awk -v owned=1 -v drain=1 -v fmt=save|proc -v split_dir=DIR -v hz=HZ -v host=NAME -v dry=0 \
#       -v timeout=SECONDS -v img=IMAGE -v imgkey=MD5 -f ipvs-proc.awk -f ipvs-plan.awk \
#       [file=0 ONLY] file=2 LIVE file=1 DESIRED file=3 RECORDED
# (every -v may be left out: split_dir, img and imgkey empty, the numbers 0, fmt save).
# It reads file 1 (DESIRED), file 2 (LIVE, in ipvsadm -S -n form, or /proc/net/ip_vs when fmt
# is "proc") and file 3 (RECORDED: services lvsgen added, one name a line). Without split_dir,
# it prints tagged lines:
#   A <ipvsadm line>   phase 1, one ipvsadm -R: add or edit services, then real servers,
#                      then set the real servers that go to weight 0 (drain)
#   W <service> <rs>   wait until that real server has no active connection
#   R <ipvsadm line>   phase 2, one ipvsadm -R: delete real servers, then services
# With split_dir=DIR it writes them to DIR/plan, the bare lines to DIR/A, DIR/W and DIR/R, what
# to print to DIR/show (the commands as run, or as they would run with dry=1), and the
# record of services as it must be before (DIR/services.before) and after (DIR/services.after)
# the change, and the names of the services the A and R lines touch (DIR/touched); it prints
# the counts "A W R ADDED DELETED".
# With img (the image of DESIRED, ipvsadm.proc in the host folder, see lvsgen/procimage.py)
# whose first line ends in imgkey (the MD5 sum of DESIRED) and fmt "proc", DESIRED is not read:
# each /proc line is looked up in the image by its words, and only the lines that match nothing
# are converted. A table equal to the file is then settled by lookups alone, and the plan is
# the same.
# With file 0 (ONLY: service names, one a line, given first) the plan is scoped: lines of
# other services, in DESIRED and LIVE alike, are skipped unread. The plan is then the full
# plan restricted to those services; the verify after a change reads back only what it touched.
# Exit 5: with fmt "proc", DESIRED uses something /proc cannot show; 3 and 4: see proc_line.
# With an image, file 0 is ignored (lvs_ipvs_diff gives a scoped plan no image).
# A service is deleted if it is not described and either owned is 1 or it is in RECORDED.
# A described service belongs to lvsgen with all of its real servers.
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
