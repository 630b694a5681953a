# thresholds.awk: the -e lines that put the connection thresholds of real servers right, for
# lvs_thresholds_plan (thresholds.sh), which runs it as LVS_AWK_THRESHOLDS (its name in the engine):
#   awk -f thresholds.awk file=1 RULES file=2 THRESHOLDS file=3 LISTING
# RULES is the rules file, THRESHOLDS the thresholds file (SERVICE -r SERVER -x UPPER -y LOWER,
# a line), LISTING what ipvsadm -L -n --thresholds prints. For every real server of a described
# service (one the thresholds file does not name must be at 0 0) whose thresholds differ, it
# prints the -e line that puts them right, with the attributes RULES gives that real server.
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
