#!/usr/bin/env bash
# Guest side of benchmarks/bench_converge.py; runs in lvsgen's test VM as /test/run.sh.
#
# /test/bench.env (written by the host side) says what to do:
#   DIRECTOR HOSTNAME IFACE ADDRESS   the director's folder name, hostname, interface, DIP/prefix
#   TREES        "A B C ...": built trees under /test/trees/<tree>/<DIRECTOR>/
#   STEPS        "name:tree:args:expected_rc:table_tree ..." (args: '+'-separated, '-' for none)
#   YARDSTICK_N  timed ipvsadm-restore rounds (median taken by the host side)
#   TRACE        1: run every setup.sh under bash -x with a timestamped PS4 (diagnostic run)
#   PAUSE        seconds to wait before each step (runs on a real host are minutes apart)
#
# Everything runs in one network namespace ("lb") with its own hostname, as the director.
# The trees are copied to tmpfs first so that 9p reads do not count. Each step is timed with
# $EPOCHREALTIME around the command alone; its output goes to a file. After each step the
# live table (ipvsadm -S -n, sorted) is compared with the sorted rules file of table_tree.
# Raw facts go to /test/out/, and /test/results.json gathers them.
set -uo pipefail

T=/test
OUT=$T/out
W=/tmp/bench
# shellcheck source=/dev/null
. "$T/bench.env"

rules_of() { # TREE: the tree's rules file (etc/lvsgen/ipvsadm.rules, or the older etc/ipvsadm.rules)
  local d=$W/$1/$DIRECTOR
  if [[ -f $d/etc/lvsgen/ipvsadm.rules ]]; then
    printf '%s\n' "$d/etc/lvsgen/ipvsadm.rules"
  else
    printf '%s\n' "$d/etc/ipvsadm.rules"
  fi
}

elapsed() { # T0 T1 (EPOCHREALTIME values): seconds, 6 decimals
  local a=${1/./} b=${2/./} d
  d=$((10#$b - 10#$a))
  printf '%d.%06d' $((d / 1000000)) $((d % 1000000))
}

# table_check NAME TREE: is the live table (sorted) the sorted rules file of TREE?
table_check() {
  local name=$1 tree=$2
  ipvsadm -S -n 2>"$OUT/$name.live.err" | LC_ALL=C sort >"$OUT/$name.live"
  LC_ALL=C sort "$(rules_of "$tree")" >"$OUT/$name.want"
  if cmp -s "$OUT/$name.live" "$OUT/$name.want"; then
    echo match >"$OUT/$name.table"
  else
    echo differ >"$OUT/$name.table"
    diff "$OUT/$name.want" "$OUT/$name.live" | head -n 40 >"$OUT/$name.diff"
  fi
}

log() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }

# --- outer: build the director's namespace, then run the rest inside it --------------------------
if [[ ${1:-} != inner ]]; then
  rm -rf "$OUT"
  # The guest's /dev is a bare devtmpfs: add the links udev makes on a real system (bash's
  # process substitution, <(...), needs /dev/fd).
  [[ -e /dev/fd ]] || ln -s /proc/self/fd /dev/fd
  for i in 0:stdin 1:stdout 2:stderr; do
    [[ -e /dev/${i#*:} ]] || ln -s "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"
  done
  mkdir -p "$OUT" "$W"
  # The guest is bare and does not autoload modules: the bench's own device, and IPVS with the
  # schedulers the rules use (the yardstick, ipvsadm-restore, loads nothing by itself).
  modprobe -a dummy || exit 1
  log "kernel $(uname -r), $(nproc) CPU(s); copying the trees to tmpfs"
  for tree in $TREES; do
    cp -a "$T/trees/$tree" "$W/$tree" || { echo "cannot copy tree $tree"; exit 1; }
  done
  ip netns add lb || exit 1
  ip -n lb link set lo up
  ip -n lb link add "$IFACE" type dummy || exit 1
  ip -n lb addr add "$ADDRESS" dev "$IFACE"
  ip -n lb link set "$IFACE" up
  ip netns exec lb unshare -u bash "$0" inner
  rc=$?
  log "inner part exited $rc; writing results.json"
  INNER_RC=$rc "${LVSGEN_HOST_PYTHON:-python3}" -I -S - "$OUT" "$T/results.json" <<'PY'
import json, os, sys
out, dest = sys.argv[1], sys.argv[2]

def read(name, default=None):
    try:
        with open(os.path.join(out, name), errors="replace") as fh:
            return fh.read()
    except OSError:
        return default

def tail(text, n=25):
    return "" if text is None else "\n".join(text.rstrip("\n").splitlines()[-n:])

res = {"info": json.loads(read("info.json", "{}")), "yardstick": [], "steps": []}
for line in (read("yardstick", "") or "").splitlines():
    secs, rc, table = line.split()
    res["yardstick"].append({"seconds": float(secs), "rc": int(rc), "table": table})
for line in (read("steps", "") or "").splitlines():
    name, tree, args, expect, table_tree = line.split(":")
    timing = (read(name + ".time") or "").split()
    step = {"name": name, "tree": tree, "args": [] if args == "-" else args.split("+"),
            "expected_rc": int(expect), "table_tree": table_tree}
    if len(timing) == 2:
        step["seconds"] = float(timing[0])
        step["rc"] = int(timing[1])
    else:
        step["seconds"] = None
        step["rc"] = None
    step["table"] = (read(name + ".table") or "missing").strip()
    step["table_diff"] = read(name + ".diff", "")
    text = read(name + ".out", "")
    step["output_lines"] = len(text.splitlines())
    step["output_tail"] = tail(text)
    if os.path.exists(os.path.join(out, name + ".trace")):
        step["trace"] = name + ".trace"
    res["steps"].append(step)
for key in ("save", "proc", "bash", "true", "edit"):
    v = read(key)
    if v:
        res.setdefault("reads", {})[key] = [float(x) for x in v.split()]
res["inner_rc"] = int(os.environ.get("INNER_RC", "0") or 0)
with open(dest, "w") as fh:
    json.dump(res, fh, indent=1)
PY
  exit "$rc"
fi

# --- inner: in the director's namespace, with its hostname ---------------------------------------
hostname "$HOSTNAME"
RULES_A=$(rules_of "${TREES%% *}")
printf '{"kernel": "%s", "cpus": %d, "rules_lines": %d, "ipvsadm": "%s", "bash": "%s"}\n' \
  "$(uname -r)" "$(nproc)" "$(grep -c . "$RULES_A")" "$(ipvsadm --version 2>&1 | head -n 1)" \
  "$BASH_VERSION" >"$OUT/info.json"

# shellcheck disable=SC2046 # one word per scheduler
modprobe -a ip_vs $(sed -n 's/^-A .* -s \([a-z]*\).*/ip_vs_\1/p' "$RULES_A" | sort -u) || exit 1

# Warm-up (not timed): the host's binaries come over 9p, so read every one once.
cat "$W"/*/"$DIRECTOR"/* >/dev/null 2>&1
ipvsadm -L -n >/dev/null
bash -c : </dev/null
for tool in ip awk sort md5sum stat cmp install mv mktemp flock modprobe sysctl find sed grep rm mkdir readlink uname; do
  p=$(command -v "$tool") && cat "$p" >/dev/null
done
ipvsadm-restore <"$RULES_A" >/dev/null 2>&1
ipvsadm -S -n >/dev/null
ipvsadm -C

# Yardstick: ipvsadm-restore of tree A's rules file on an empty table.
log "yardstick: ipvsadm-restore x $YARDSTICK_N ($(grep -c . "$RULES_A") lines)"
: >"$OUT/yardstick"
for ((i = 1; i <= YARDSTICK_N; i++)); do
  ipvsadm -C
  t0=$EPOCHREALTIME
  ipvsadm-restore <"$RULES_A" >"$OUT/yardstick.$i.out" 2>&1
  rc=$?
  t1=$EPOCHREALTIME
  table_check "yardstick.$i" "${TREES%% *}"
  echo "$(elapsed "$t0" "$t1") $rc $(cat "$OUT/yardstick.$i.table")" >>"$OUT/yardstick"
done
# How long reading the full table takes, both ways (information for the report).
: >"$OUT/save"
: >"$OUT/proc"
for i in 1 2 3; do
  t0=$EPOCHREALTIME; ipvsadm -S -n >/dev/null; t1=$EPOCHREALTIME
  printf '%s ' "$(elapsed "$t0" "$t1")" >>"$OUT/save"
  t0=$EPOCHREALTIME; cat /proc/net/ip_vs >/dev/null; t1=$EPOCHREALTIME
  printf '%s ' "$(elapsed "$t0" "$t1")" >>"$OUT/proc"
done
# Floors: a bash start, a fork and exec, one weight edit on the full table.
: >"$OUT/bash"
: >"$OUT/true"
: >"$OUT/edit"
edit=$(awk '$1 == "-a" { $1 = "-e"; sub(/-w [0-9]+/, "-w 7"); print; exit }' "$RULES_A")
for i in 1 2 3; do
  t0=$EPOCHREALTIME; bash -c : </dev/null; t1=$EPOCHREALTIME
  printf '%s ' "$(elapsed "$t0" "$t1")" >>"$OUT/bash"
  t0=$EPOCHREALTIME; /bin/true; t1=$EPOCHREALTIME
  printf '%s ' "$(elapsed "$t0" "$t1")" >>"$OUT/true"
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086 # the rules line, word by word
  ipvsadm $edit
  t1=$EPOCHREALTIME
  printf '%s ' "$(elapsed "$t0" "$t1")" >>"$OUT/edit"
done
ipvsadm -C
log "yardstick: $(cut -d' ' -f1 "$OUT/yardstick" | xargs)"

# The steps.
# shellcheck disable=SC2016 # expanded by the traced shell, at each trace line
# (no ${X##*/} here: the EXIT trap runs with BASH_SOURCE empty, and setup.sh has set -u)
TRACE_PS4='+ $EPOCHREALTIME ${BASH_SOURCE[0]:-main}:$LINENO ${FUNCNAME[0]:-main} '
: >"$OUT/steps"
for step in $STEPS; do
  IFS=: read -r name tree args expect table_tree <<<"$step"
  echo "$step" >>"$OUT/steps"
  script=$W/$tree/$DIRECTOR/setup.sh
  sleep "${PAUSE:-0}"
  argv=()
  if [[ $args != - ]]; then IFS=+ read -r -a argv <<<"$args"; fi
  if [[ ${TRACE:-0} == 1 ]]; then
    t0=$EPOCHREALTIME
    # PS4 is not taken from the environment when running as root: set it inside. Source the
    # script with its own arguments only ('. FILE' without arguments would pass on ours).
    bash -c 'PS4=$1 script=$2; shift 2; BASH_XTRACEFD=7; set -x; . "$script" "$@"' trace "$TRACE_PS4" "$script" "${argv[@]}" \
      >"$OUT/$name.out" 2>&1 7>"$W/$name.trace" </dev/null
    rc=$?
    t1=$EPOCHREALTIME
    mv "$W/$name.trace" "$OUT/$name.trace" # written to tmpfs: 9p writes would distort it more
  else
    t0=$EPOCHREALTIME
    bash "$script" "${argv[@]}" >"$OUT/$name.out" 2>&1 </dev/null
    rc=$?
    t1=$EPOCHREALTIME
  fi
  echo "$(elapsed "$t0" "$t1") $rc" >"$OUT/$name.time"
  table_check "$name" "$table_tree"
  log "$name: $(elapsed "$t0" "$t1") s, rc $rc (expected $expect), table $(cat "$OUT/$name.table")"
done
# setup.sh's record of what it added, for the report
cp /var/lib/lvsgen/record "$OUT/record" 2>/dev/null
exit 0
