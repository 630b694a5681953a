# ipvs-proc.awk: /proc/net/ip_vs read in ipvsadm -S -n form; functions only (in the engine:
# LVS_AWK_IPVS_PROC). With ipvs-proc-print.awk it prints the table (lvs_ipvs_proc), with
# ipvs-plan.awk it is how the plan reads the live table (lvs_ipvs_plan, both in ipvs.sh):
#   awk -v hz=HZ -v counts=0 -f ipvs-proc.awk -f ipvs-proc-print.awk /proc/net/ip_vs
#
# proc_line(COUNTS): the current /proc/net/ip_vs line ($0) in ipvsadm -S -n form ("" for the
# header). With COUNTS 1, a real-server line ends in its active connection count. Sets
# proc_err to 3 (a persistent service and no hz) or 2 (an unknown protocol), and fwm when it
# meets a firewall-mark service, whose family /proc does not show. hz is the kernel HZ, by
# which /proc multiplies persistence timeouts.
# /proc does not show: tunnel types (read as ipip, the default), scheduler flags (-b),
# persistence engines (--pe), one-packet scheduling on IPv6 services, thresholds.
# showable(): can /proc show everything the current ipvsadm -S -n line ($0) says? Only
# lines in the exact form and option order ipvsadm prints qualify; anything else is read
# with ipvsadm -S -n.
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
