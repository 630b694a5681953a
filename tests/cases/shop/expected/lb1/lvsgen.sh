# shellcheck shell=bash disable=SC2153 # the LVS_* data comes from setup.sh, which sources this
# lvsgen host engine: the same file on every host, sourced by the host's generated setup.sh.
#
# setup.sh only declares what its host must look like (the LVS_* arrays below) and calls
# lvsgen_main. This file holds every bit of logic: read the live state once, compute the
# delta, apply it in as few commands as possible, verify, and keep a record of what lvsgen
# added so that it can later remove exactly that and nothing else.
#
# Data setup.sh declares before it calls lvsgen_main (every element is one shell word or a
# few words split on spaces; lvsgen's schema allows no spaces in any of them):
#   LVS_HOST LVS_HOSTNAME LVS_CLUSTER    names
#   LVS_FILES      ("SRC MODE" ...)     files of the host folder; each installs to /SRC
#   LVS_MODULES    (name ...)           kernel modules
#   LVS_SYSCTLS    ("key value" ...)    live sysctls (the same as the sysctl.d file)
#   LVS_DUMMIES    (dev ...)            dummy devices lvsgen creates
#   LVS_NOARP      (dev ...)            devices with ARP off
#   LVS_UP         (dev ...)            devices that must be up
#   LVS_ADDRESSES  ("cidr dev [nodad]" ...)
#   LVS_ROUTES     ("-4|-6 via dev" ...) default routes
#   LVS_RULES      host-folder path of the ipvsadm rules file ('' on real servers)
#   LVS_TABLE_OWNED 1: every IPVS service this file does not describe is removed;
#                   0: only services lvsgen added are (the rest belong to someone else)
#   LVS_DRAIN_TIMEOUT seconds to wait for a removed real server's active connections to end
#   LVS_UNIT       host-folder path of the boot unit ('' if none)
#
# Exit status: 0 done (or, with --dry-run, nothing to do); 2 with --dry-run when changes are
# pending; 1 on any error, with the step that failed named.

LVSGEN_STATE=${LVSGEN_STATE:-/var/lib/lvsgen}   # the record, and the copy the boot unit runs
LVSGEN_RUN=${LVSGEN_RUN:-/run/lvsgen}           # per-boot facts (lock, kernel HZ)
LVSGEN_PROC_IPVS=${LVSGEN_PROC_IPVS:-/proc/net/ip_vs} # the kernel's table (tests point it at a dump)
LVS_STEP=start
LVS_DRY_RUN=0
LVS_FORCE=0
LVS_BOOT=0
LVS_DRAIN=1
LVS_CHANGES=0
LVS_UNITS_CHANGED=0
LVS_TMP=

lvs_say() { printf 'lvsgen[%s]: %s\n' "${LVS_HOST:-?}" "$*"; }
lvs_die() {
  printf 'lvsgen[%s]: error in step %s: %s\n' "${LVS_HOST:-?}" "$LVS_STEP" "$*" >&2
  exit 1
}
lvs_step() { LVS_STEP=$1; }

# lvs_run CMD...: the one place a change is made. Counts it, prints it, stops on failure.
lvs_run() {
  LVS_CHANGES=$((LVS_CHANGES + 1))
  if ((LVS_DRY_RUN)); then
    printf 'lvsgen[%s]: would run:' "$LVS_HOST"
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  printf 'lvsgen[%s]: +' "$LVS_HOST"
  printf ' %q' "$@"
  printf '\n'
  local rc=0
  "$@" || rc=$?
  ((rc == 0)) || lvs_die "'$*' failed with exit status $rc"
}

lvs_usage() {
  printf '%s\n' \
    "usage: setup.sh [--dry-run] [--force] [--no-drain] [--boot]" \
    "  --dry-run   print every command that would run, change nothing;" \
    "              exit 0 when there is nothing to do, 2 when changes are pending" \
    "  --force     run even though the hostname is not '$LVS_HOSTNAME'" \
    "  --no-drain  remove real servers at once instead of draining them first" \
    "  --boot      what the boot unit runs: modules, sysctls and the IPVS table only"
}

lvs_parse_args() {
  while (($# > 0)); do
    case $1 in
      --dry-run) LVS_DRY_RUN=1 ;;
      --force) LVS_FORCE=1 ;;
      --no-drain) LVS_DRAIN=0 ;;
      --boot) LVS_BOOT=1 LVS_FORCE=1 ;;
      -h | --help) lvs_usage; exit 0 ;;
      *) lvs_usage >&2; lvs_die "unknown argument '$1'" ;;
    esac
    shift
  done
}

# --- the record: what lvsgen added on this host -------------------------------------------------
# One line per thing, fields separated by tabs: "file DEST", "addr CIDR DEV", "dummy DEV",
# "route FAMILY VIA DEV OLD", "sysctl KEY ORIGINAL SET", "ipvs SERVICE", "link PATH".
# A line is appended the moment the thing is added, so a run that dies halfway still knows
# what it added; removal drops the line. Nothing that is not in the record is ever removed.
declare -A LVS_REC=()
LVS_RECORD_HEADER='# what lvsgen added on this host; setup.sh removes only what is listed here'
LVS_REC_DIRTY=0 # set when a line is dropped: the record is then rewritten at the end

lvs_record_load() {
  local line unended=0
  LVS_REC=()
  [[ -f $LVSGEN_STATE/record ]] || return 0
  while IFS= read -r line || { [[ -n $line ]] && unended=1; }; do
    [[ -z $line || $line == '#'* ]] && continue
    lvs_record_key "$line"
    LVS_REC[$LVS_KEY]=$line
  done <"$LVSGEN_STATE/record"
  # A hand-edited record without a final newline: end it, so the next line stays apart.
  if ((unended && !LVS_DRY_RUN)); then printf '\n' >>"$LVSGEN_STATE/record"; fi
}

# lvs_record_key LINE: sets LVS_KEY to the identity of a record line (its kind and the
# fields that name the thing). No subshell: the record can hold thousands of lines.
lvs_record_key() {
  local kind=${1%%$'\t'*} rest=${1#*$'\t'}
  LVS_KEY=$kind$'\t'${rest%%$'\t'*}
  if [[ $kind == addr ]]; then
    rest=${rest#*$'\t'}
    LVS_KEY+=$'\t'${rest%%$'\t'*}
  fi
}

lvs_record_add() { # FIELD...: remember something lvsgen is about to add
  ((LVS_DRY_RUN)) && return 0
  local line
  printf -v line '%s\t' "$@"
  line=${line%$'\t'}
  lvs_record_key "$line"
  [[ ${LVS_REC[$LVS_KEY]-} == "$line" ]] && return 0
  LVS_REC[$LVS_KEY]=$line
  if [[ ! -f $LVSGEN_STATE/record ]]; then
    mkdir -p -- "$LVSGEN_STATE"
    printf '%s\n' "$LVS_RECORD_HEADER" >"$LVSGEN_STATE/record"
  fi
  printf '%s\n' "$line" >>"$LVSGEN_STATE/record"
}

lvs_record_drop() { # KEY
  unset 'LVS_REC[$1]'
  LVS_REC_DIRTY=1
}

lvs_record_save() { # rewrite the record without the lines removal dropped
  ((LVS_DRY_RUN || !LVS_REC_DIRTY)) && return 0
  mkdir -p -- "$LVSGEN_STATE"
  local tmp=$LVSGEN_STATE/record.lvsgen-new
  {
    printf '%s\n' "$LVS_RECORD_HEADER"
    if ((${#LVS_REC[@]} > 0)); then
      printf '%s\n' "${LVS_REC[@]}" | LC_ALL=C sort
    fi
  } >"$tmp"
  mv -f -- "$tmp" "$LVSGEN_STATE/record"
}

# --- preflight: everything is checked before anything changes -----------------------------------
lvs_preflight() {
  lvs_step preflight
  local -a problems=()
  ((EUID == 0)) || problems+=("run as root: setup.sh changes addresses, sysctls and the IPVS table")
  local tool
  for tool in "ip iproute2" "modprobe kmod" "flock util-linux" "awk mawk or gawk" "cmp diffutils"; do
    command -v "${tool%% *}" >/dev/null || problems+=("'${tool%% *}' not found: install ${tool#* }")
  done
  if [[ -n $LVS_RULES ]]; then
    command -v ipvsadm >/dev/null || problems+=("'ipvsadm' not found: install the ipvsadm package")
  fi
  local actual=${HOSTNAME:-}
  [[ -n $actual ]] || actual=$(uname -n)
  if [[ $actual != "$LVS_HOSTNAME" && ${actual%%.*} != "$LVS_HOSTNAME" && $actual != "${LVS_HOSTNAME%%.*}" ]]; then
    if ((LVS_FORCE)); then
      lvs_say "hostname is '$actual', not '$LVS_HOSTNAME'; going on because of --force"
    else
      problems+=("this script is for '$LVS_HOSTNAME' but this host is '$actual'; copy the right host's folder, or pass --force")
    fi
  fi
  if ((!LVS_BOOT)); then
    # Every device setup.sh does not create itself must exist already.
    lvs_read_links
    local dev
    for dev in "${LVS_UP[@]}"; do
      [[ -n ${LVS_LINKS[$dev]-} ]] && continue
      lvs_in "$dev" "${LVS_DUMMIES[@]}" && continue
      [[ $dev == tunl0 ]] && continue # made by the ipip module, which setup.sh loads
      problems+=("device '$dev' does not exist on this host; fix 'interface' in the cluster file or create it")
    done
  fi
  if ((${#problems[@]} > 0)); then
    local p
    for p in "${problems[@]}"; do
      printf 'lvsgen[%s]: error in step preflight: %s\n' "$LVS_HOST" "$p" >&2
    done
    exit 1
  fi
  mkdir -p -- "$LVSGEN_RUN"
  exec 9>"$LVSGEN_RUN/setup.lock"
  flock -n 9 || lvs_die "another setup.sh is running on this host"
}

lvs_in() { # NEEDLE ITEM...: is NEEDLE one of the items?
  local needle=$1 item
  shift
  for item in "$@"; do
    [[ $item == "$needle" ]] && return 0
  done
  return 1
}

# --- files ----------------------------------------------------------------------------------------
# lvs_sync_files SRC DEST MODE [SRC DEST MODE ...]: install each SRC as DEST unless DEST
# already has its bytes and mode. One md5sum and one stat for all of them.
lvs_sync_files() {
  (($# > 0)) || return 0
  local -A sum=() mode=()
  local -a srcs=() dests=() modes=()
  local h m name i
  while (($# >= 3)); do
    srcs+=("$1") dests+=("$2") modes+=("$3")
    shift 3
  done
  while read -r h name; do
    [[ -n $name ]] || continue
    sum[$name]=$h
  done <<<"$(md5sum -- "${srcs[@]}" "${dests[@]}" 2>/dev/null || true)"
  while read -r m name; do
    [[ -n $name ]] || continue
    mode[$name]=$m
  done <<<"$(stat -c '%a %n' -- "${dests[@]}" 2>/dev/null || true)"
  for i in "${!srcs[@]}"; do
    [[ -n ${sum[${srcs[i]}]-} ]] || lvs_die "${srcs[i]} is missing from the host folder: copy the whole folder"
    if [[ ${sum[${dests[i]}]-} == "${sum[${srcs[i]}]}" && ${mode[${dests[i]}]-} == "${modes[i]#0}" ]]; then
      continue
    fi
    lvs_run install -D -m "${modes[i]}" -- "${srcs[i]}" "${dests[i]}.lvsgen-new"
    lvs_run mv -f -- "${dests[i]}.lvsgen-new" "${dests[i]}"
    if [[ ${dests[i]} == /etc/systemd/system/* ]]; then LVS_UNITS_CHANGED=1; fi
  done
}

# The host's files. Each is recorded before it is written.
lvs_files() {
  lvs_step files
  local entry src
  local -a sync=()
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    sync+=("$LVS_HERE/$src" "/$src" "${entry##* }")
    lvs_record_add file "/$src"
  done
  lvs_sync_files "${sync[@]}"
}

# The copy the boot unit runs: setup.sh, this library and the host's files under the state
# folder, so that a reboot does not depend on where the user copied the host folder. It is
# updated last, after everything else succeeded: a failed run leaves the last good copy.
lvs_copy() {
  lvs_step copy
  local copy=$LVSGEN_STATE/host entry src
  [[ $LVS_HERE -ef $copy ]] && return 0
  local -a sync=("$LVS_HERE/setup.sh" "$copy/setup.sh" 0755 "$LVS_HERE/lvsgen.sh" "$copy/lvsgen.sh" 0644)
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    sync+=("$LVS_HERE/$src" "$copy/$src" "${entry##* }")
  done
  lvs_sync_files "${sync[@]}"
  lvs_prune_copy
}

lvs_prune_copy() { # files of an older build in the boot copy that this build no longer has
  local copy=$LVSGEN_STATE/host old rel
  [[ -d $copy ]] || return 0
  local -a found=()
  mapfile -t found <<<"$(find "$copy" -type f 2>/dev/null)"
  for old in "${found[@]}"; do
    [[ -n $old ]] || continue
    rel=${old#"$copy"/}
    [[ $rel == setup.sh || $rel == lvsgen.sh ]] && continue
    lvs_in "$rel" "${LVS_FILES[@]/% */}" && continue
    lvs_run rm -f -- "$old"
  done
}

# The boot unit: installed like any file (lvs_files), then enabled by the symlink that
# 'systemctl enable' would make, so that it works with or without a running systemd.
lvs_enable_unit() {
  [[ -n ${LVS_UNIT:-} ]] || return 0
  lvs_step boot-unit
  local name=${LVS_UNIT##*/}
  local wants=/etc/systemd/system/multi-user.target.wants
  local link=$wants/$name
  if [[ $(readlink -- "$link" 2>/dev/null) != "/$LVS_UNIT" ]]; then
    lvs_run mkdir -p -- "$wants"
    lvs_record_add link "$link"
    lvs_run ln -sfn -- "/$LVS_UNIT" "$link"
    LVS_UNITS_CHANGED=1
  fi
}

# A running systemd learns of a unit that was added, changed or removed.
lvs_systemd_reload() {
  ((LVS_UNITS_CHANGED)) || return 0
  [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null || return 0
  lvs_step boot-unit
  lvs_run systemctl daemon-reload
}

# --- kernel modules and sysctls ---------------------------------------------------------------------
lvs_modules() {
  lvs_step modules
  local module
  for module in "${LVS_MODULES[@]}"; do
    [[ -d /sys/module/$module ]] && continue
    lvs_run modprobe -- "$module"
  done
}

lvs_sysctl_path() { # KEY: sets LVS_PATH to its file under /proc/sys ('.' separates, unless the key uses '/')
  if [[ $1 == */* ]]; then
    LVS_PATH=/proc/sys/$1
  else
    LVS_PATH=/proc/sys/${1//.//}
  fi
}

lvs_sysctls() {
  lvs_step sysctls
  local entry key value path have
  for entry in "${LVS_SYSCTLS[@]}"; do
    key=${entry% *} value=${entry##* }
    lvs_sysctl_path "$key"
    path=$LVS_PATH
    if [[ ! -r $path ]]; then
      ((LVS_DRY_RUN)) && { lvs_run sysctl -q -w "$key=$value"; continue; }
      lvs_die "sysctl $key does not exist on this kernel (is its module loaded?)"
    fi
    read -r have <"$path"
    [[ $have == "$value" ]] && continue
    [[ -n ${LVS_REC[sysctl$'\t'$key]-} ]] || lvs_record_add sysctl "$key" "$have" "$value"
    lvs_run sysctl -q -w "$key=$value"
  done
}

# --- devices, addresses, routes ------------------------------------------------------------------------
# One 'ip -o link' and one 'ip -o addr' read, whatever the number of VIPs.
declare -A LVS_LINKS=() # device -> ",FLAG,FLAG,"
lvs_read_links() {
  local name flags
  LVS_LINKS=()
  while read -r name flags; do
    [[ -n $name ]] || continue
    LVS_LINKS[$name]=$flags
  done <<<"$(ip -o link show 2>/dev/null | awk -F': ' '{ name = $2; sub(/@.*/, "", name); flags = $3; sub(/>.*/, "", flags); sub(/.*</, "", flags); print name, "," flags "," }')"
}
lvs_addrs() { ip -o addr show 2>/dev/null | awk '{ print $4, $2 }'; }

lvs_devices() {
  lvs_step devices
  local dev
  for dev in "${LVS_DUMMIES[@]}"; do
    if [[ -z ${LVS_LINKS[$dev]-} ]]; then
      lvs_record_add dummy "$dev"
      lvs_run ip link add "$dev" type dummy
      LVS_LINKS[$dev]=,
    fi
  done
  for dev in "${LVS_NOARP[@]}"; do
    [[ ${LVS_LINKS[$dev]-} == *,NOARP,* ]] || lvs_run ip link set dev "$dev" arp off
  done
  for dev in "${LVS_UP[@]}"; do
    [[ ${LVS_LINKS[$dev]-} == *,UP,* ]] || lvs_run ip link set dev "$dev" up
  done
}

lvs_addresses() {
  lvs_step addresses
  local -A have=() ip_on=()
  local cidr dev entry nodad
  LVS_ADDRS=$'\n'$(lvs_addrs)$'\n'
  while read -r cidr dev; do
    have["$cidr $dev"]=1
    ip_on["${cidr%/*} $dev"]=$cidr
  done <<<"$LVS_ADDRS"
  for entry in "${LVS_ADDRESSES[@]}"; do
    read -r cidr dev nodad <<<"$entry"
    [[ -n ${have["$cidr $dev"]-} ]] && continue
    if [[ -n ${ip_on["${cidr%/*} $dev"]-} ]]; then
      lvs_die "$dev has ${cidr%/*} as ${ip_on["${cidr%/*} $dev"]}, not $cidr; remove it ('ip addr del ${ip_on["${cidr%/*} $dev"]} dev $dev') and run again"
    fi
    lvs_record_add addr "$cidr" "$dev"
    if [[ $nodad == nodad ]]; then
      lvs_run ip addr add "$cidr" dev "$dev" nodad
    else
      lvs_run ip addr add "$cidr" dev "$dev"
    fi
  done
}

lvs_routes() {
  lvs_step routes
  local entry family via dev have
  for entry in "${LVS_ROUTES[@]}"; do
    read -r family via dev <<<"$entry"
    have=$(ip "$family" route show default 2>/dev/null) || have=
    [[ $have == "default via $via dev $dev"* && $have != *$'\n'* ]] && continue
    [[ -n ${LVS_REC[route$'\t'$family]-} ]] || lvs_record_add route "$family" "$via" "$dev" "${have%%$'\n'*}"
    lvs_run ip "$family" route replace default via "$via" dev "$dev"
  done
}

# --- removal of what this build no longer describes ------------------------------------------------------
# Only lines of the record are candidates, in the reverse order of setup: the table first
# (lvs_ipvs does that), then addresses, routes, devices, sysctls, files.
lvs_remove_stale() {
  lvs_step remove
  local -A want=()
  local entry cidr dev nodad key line family via old f
  local -a fields
  for entry in "${LVS_ADDRESSES[@]}"; do
    read -r cidr dev nodad <<<"$entry"
    want["addr"$'\t'"$cidr"$'\t'"$dev"]=1
  done
  for entry in "${LVS_DUMMIES[@]}"; do want["dummy"$'\t'"$entry"]=1; done
  for entry in "${LVS_ROUTES[@]}"; do want["route"$'\t'"${entry%% *}"]=1; done
  for entry in "${LVS_SYSCTLS[@]}"; do want["sysctl"$'\t'"${entry% *}"]=1; done
  for entry in "${LVS_FILES[@]}"; do want["file"$'\t'"/${entry% *}"]=1; done
  if [[ -n ${LVS_UNIT:-} ]]; then
    want["link"$'\t'"/etc/systemd/system/multi-user.target.wants/${LVS_UNIT##*/}"]=1
  fi
  local addrs=$LVS_ADDRS
  local kind
  for kind in addr route dummy sysctl link file; do
    for key in "${!LVS_REC[@]}"; do
      [[ $key == "$kind"$'\t'* && -z ${want[$key]-} ]] || continue
      line=${LVS_REC[$key]}
      IFS=$'\t' read -r -a fields <<<"$line"
      case $kind in
        addr)
          [[ $addrs == *$'\n'"${fields[1]} ${fields[2]}"$'\n'* ]] && lvs_run ip addr del "${fields[1]}" dev "${fields[2]}"
          ;;
        route)
          family=${fields[1]} via=${fields[2]} dev=${fields[3]} old=${fields[4]-}
          f=$(ip "$family" route show default 2>/dev/null) || f=
          if [[ $f == "default via $via dev $dev"* ]]; then
            if [[ $old == "default via "* ]]; then
              # shellcheck disable=SC2086 # the route the host had before, word by word
              lvs_run ip "$family" route replace ${old}
            else
              lvs_run ip "$family" route del default via "$via" dev "$dev"
            fi
          fi
          ;;
        dummy)
          ip link show dev "${fields[1]}" >/dev/null 2>&1 && lvs_run ip link del "${fields[1]}"
          ;;
        sysctl)
          # Put back the value the host had, unless someone changed it since.
          lvs_sysctl_path "${fields[1]}"
          f=$LVS_PATH
          if [[ -r $f ]]; then
            read -r old <"$f"
            [[ $old == "${fields[3]}" ]] && lvs_run sysctl -q -w "${fields[1]}=${fields[2]}"
          fi
          ;;
        link | file)
          if [[ -e ${fields[1]} || -L ${fields[1]} ]]; then
            lvs_run rm -f -- "${fields[1]}"
            if [[ ${fields[1]} == /etc/systemd/system/* ]]; then LVS_UNITS_CHANGED=1; fi
          fi
          ;;
      esac
      ((LVS_DRY_RUN)) || lvs_record_drop "$key"
    done
  done
}

# --- the IPVS table ---------------------------------------------------------------------------------------
# Lines are in 'ipvsadm -S -n' form. A service is named by its first two words after -A
# ("-t 192.0.2.1:80"); a real server by its service and its -r address.
#
# lvs_ipvs_plan DESIRED LIVE RECORDED OWNED DRAIN prints the delta, one tagged line each:
#   A <ipvsadm line>   phase 1, one 'ipvsadm -R': add or edit services, then real servers,
#                      then set the real servers that go to weight 0 (drain)
#   W <service> <rs>   wait until that real server has no active connection
#   R <ipvsadm line>   phase 2, one 'ipvsadm -R': delete real servers, then services
# A service is deleted if it is not described and either OWNED is 1 or its name is a line of
# RECORDED. A described service is lvsgen's with all of its real servers.
lvs_ipvs_plan() {
  LC_ALL=C awk -v owned="$4" -v drain="$5" '
    function rest(from,   i, s) { s = ""; for (i = from; i <= NF; i++) s = s (s == "" ? "" : " ") $i; return s }
    function bad(what) { printf "lvsgen: %s line %d: cannot read: %s\n", what, FNR, $0 > "/dev/stderr"; failed = 1; exit 2 }
    file == 3 { if ($0 != "") rec[$0] = 1; next }
    /^[ \t]*$/ || /^#/ { next }
    # An IPv6 firewall-mark service is "-f MARK -6": the family is part of its name.
    ($1 == "-A" || $1 == "-a") && $2 == "-f" && $4 == "-6" { $3 = $3 " -6"; for (i = 4; i < NF; i++) $i = $(i + 1); NF-- }
    $1 == "-A" {
      if (NF < 5) bad(file == 1 ? "desired" : "live")
      k = $2 " " $3
      if (file == 1) { dsvc[k] = rest(4); dso[++nds] = k } else { lsvc[k] = rest(4); lso[++nls] = k }
      next
    }
    $1 == "-a" {
      if (NF < 7 || $4 != "-r") bad(file == 1 ? "desired" : "live")
      k = $2 " " $3 SUBSEP $5
      if (file == 1) { ddst[k] = rest(6); ddo[++ndd] = k } else { ldst[k] = rest(6); ldo[++nld] = k }
      next
    }
    { bad(file == 1 ? "desired" : "live") }
    function dest(k, attrs,   p) { split(k, p, SUBSEP); return p[1] " -r " p[2] " " attrs }
    function zero(attrs,   a) { a = attrs; if (!sub(/-w [0-9]+/, "-w 0", a)) a = a " -w 0"; return a }
    function weight(attrs,   p) { if (match(attrs, /-w [0-9]+/)) return substr(attrs, RSTART + 3, RLENGTH - 3) + 0; return 1 }
    END {
      if (failed) exit 2
      for (i = 1; i <= nds; i++) { k = dso[i]
        if (!(k in lsvc)) print "A -A " k " " dsvc[k]
        else if (lsvc[k] != dsvc[k]) print "A -E " k " " dsvc[k]
      }
      for (i = 1; i <= ndd; i++) { k = ddo[i]
        if (!(k in ldst)) print "A -a " dest(k, ddst[k])
        else if (ldst[k] != ddst[k]) print "A -e " dest(k, ddst[k])
      }
      # services that go away: deleted whole (their real servers with them)
      for (i = 1; i <= nls; i++) { k = lso[i]
        if (!(k in dsvc) && (owned == 1 || (k in rec))) gone[k] = 1
      }
      # real servers that go away, from described services or from services that go away
      for (i = 1; i <= nld; i++) { k = ldo[i]
        if (k in ddst) continue
        split(k, p, SUBSEP)
        if (!(p[1] in dsvc) && !(p[1] in gone)) continue
        if (drain == 1) {
          if (weight(ldst[k]) != 0) print "A -e " dest(k, zero(ldst[k]))
          waits[++nw] = "W " p[1] " " p[2]
        }
        if (p[1] in dsvc) removes[++nr] = "R -d " p[1] " -r " p[2]
      }
      for (i = 1; i <= nw; i++) print waits[i]
      for (i = 1; i <= nr; i++) print removes[i]
      for (i = 1; i <= nls; i++) if (lso[i] in gone) print "R -D " lso[i]
    }
  ' file=1 "$1" file=2 "$2" file=3 "$3"
}

# lvs_ipvs_proc [HZ] [COUNTS]: /proc/net/ip_vs in 'ipvsadm -S -n' form, read in one pass.
# Much cheaper than 'ipvsadm -S -n', which asks the kernel once per service. /proc shows
# persistence timeouts in jiffies, so HZ is needed to read a persistent service; without it,
# the function fails (status 3) when it meets one. With COUNTS=1 every real-server line
# ends in its active connection count, for draining.
# /proc does not show: tunnel types (read as ipip, the default), scheduler flags (-b),
# persistence engines (--pe), one-packet scheduling on IPv6 services, thresholds, or the
# family of a firewall-mark service (status 4 when there is one).
lvs_ipvs_proc() {
  LC_ALL=C awk -v hz="${1:-0}" -v counts="${2:-0}" '
    function hexval(h,   i, v) { v = 0; h = toupper(h); for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1; return v }
    function v4(h) { return hexval(substr(h, 1, 2)) "." hexval(substr(h, 3, 2)) "." hexval(substr(h, 5, 2)) "." hexval(substr(h, 7, 2)) }
    function v6(full,   g, n, i, best, bestlen, run, start, out, w) {
      n = split(full, g, ":")
      for (i = 1; i <= 8; i++) w[i] = hexval(g[i])
      best = 0; bestlen = 0; run = 0
      for (i = 1; i <= 8; i++) {
        if (w[i] == 0) { if (run == 0) start = i; run++; if (run > bestlen) { best = start; bestlen = run } }
        else run = 0
      }
      if (bestlen < 2) { best = 0; bestlen = 0 }
      # glibc inet_ntop: an IPv4-compatible or -mapped address ends in dotted quad
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
    function ap(s,   a, port) {  # C0000201:0050 or [2001:0db8:...]:0050
      if (substr(s, 1, 1) == "[") { a = substr(s, 2, index(s, "]") - 2); port = substr(s, index(s, "]") + 2); return "[" v6(a) "]:" hexval(port) }
      return v4(substr(s, 1, 8)) ":" hexval(substr(s, 10, 4))
    }
    function swap32(h) { return substr(h, 7, 2) substr(h, 5, 2) substr(h, 3, 2) substr(h, 1, 2) }
    NR <= 3 { next }
    $1 == "->" {
      fwd = ($3 == "Masq") ? "-m" : ($3 == "Tunnel") ? "-i" : "-g"
      line = "-a " svc " -r " ap($2) " " fwd " -w " $4 ($3 == "Tunnel" ? " --tun-type ipip" : "")
      print line (counts == 1 ? " " $5 : "")
      next
    }
    {
      proto = $1
      if (proto == "FWM") { svc = "-f " hexval($2); v6svc = 0; fwm = 1 }
      else {
        flag = (proto == "TCP") ? "-t" : (proto == "UDP") ? "-u" : (proto == "SCTP") ? "--sctp-service" : ""
        if (flag == "") { printf "lvsgen: /proc/net/ip_vs: unknown protocol %s\n", proto > "/dev/stderr"; exit 2 }
        svc = flag " " ap($2); v6svc = (substr($2, 1, 1) == "[")
      }
      line = "-A " svc " -s " $3
      ops = 0; pers = ""
      for (i = 4; i <= NF; i++) {
        if ($i == "ops") ops = 1
        else if ($i == "persistent") {
          if (hz <= 0) exit 3
          line = line " -p " int($(i + 1) / hz)
          if (v6svc) { plen = hexval(swap32($(i + 2))); if (plen != 128) line = line " -M " plen }
          else if ($(i + 2) != "FFFFFFFF") line = line " -M " v4($(i + 2))
          i += 2
        }
      }
      if (ops) line = line " -o"
      print line
    }
    # /proc does not show whether a firewall-mark service is IPv4 or IPv6 (-6): the caller
    # must read such a table with ipvsadm -S -n.
    END { if (fwm) exit 4 }
  ' "$LVSGEN_PROC_IPVS"
}

# The kernel HZ, which /proc/net/ip_vs needs for persistence timeouts: from the kernel's
# config if the distribution ships it, else learned once per boot by comparing /proc with
# 'ipvsadm -S -n' on a persistent service, and kept in $LVSGEN_RUN/hz.
lvs_kernel_hz() {
  local hz
  if [[ -r $LVSGEN_RUN/hz ]]; then
    read -r hz <"$LVSGEN_RUN/hz"
    printf '%s' "$hz"
    return 0
  fi
  hz=$(awk -F= '$1 == "CONFIG_HZ" { print $2 }' "/boot/config-$(uname -r)" 2>/dev/null) || hz=
  printf '%s' "$hz"
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
  if [[ -n $hz ]] && ! ((LVS_DRY_RUN)); then
    mkdir -p -- "$LVSGEN_RUN" && printf '%s\n' "$hz" >"$LVSGEN_RUN/hz"
  fi
}

# lvs_ipvs_proc_can_show DESIRED: does /proc/net/ip_vs show every option DESIRED uses?
lvs_ipvs_proc_can_show() {
  LC_ALL=C awk '
    $1 == "-A" {
      for (i = 4; i <= NF; i++) {
        if ($i == "-s" || $i == "-p" || $i == "-M") i++
        else if ($i == "-o" && $3 !~ /^\[/) continue
        else exit 1
      }
    }
    $1 == "-a" {
      for (i = 6; i <= NF; i++) {
        if ($i == "-w") i++
        else if ($i == "-g" || $i == "-m" || $i == "-i") continue
        else if ($i == "--tun-type" && $(i + 1) == "ipip") i++
        else exit 1
      }
    }' "$1"
}

# lvs_ipvs_live OUT DESIRED: the live table in 'ipvsadm -S -n' form, by the cheapest exact
# way. /proc/net/ip_vs is used when it can show everything the desired file says; otherwise,
# or when HZ is not known yet and a persistent service exists, 'ipvsadm -S -n'.
lvs_ipvs_live() {
  local out=$1 desired=$2 hz rc=0
  if [[ ! -e $LVSGEN_PROC_IPVS ]] && ((LVS_DRY_RUN)); then
    : >"$out" # ip_vs is not loaded: the table is empty (loading it would be a change)
    return 0
  fi
  if [[ -r $LVSGEN_PROC_IPVS ]] && lvs_ipvs_proc_can_show "$desired"; then
    hz=$(lvs_kernel_hz)
    lvs_ipvs_proc "$hz" 0 >"$out" || rc=$?
    ((rc == 0)) && return 0
  fi
  ipvsadm -S -n >"$out" || lvs_die "'ipvsadm -S -n' failed: is the ip_vs module loaded?"
  ((rc == 3)) && lvs_learn_hz "$out"
  return 0
}

# Active connections of the real servers in the W lines of a plan, read from /proc.
lvs_ipvs_active() { # PLAN: prints the sum of their active connections
  local hz
  hz=$(lvs_kernel_hz)
  [[ -n $hz ]] || hz=100 # timeouts do not matter here, only names and counts
  { lvs_ipvs_proc "$hz" 1 || true; } | LC_ALL=C awk '
    file == 1 && $1 == "W" { svc = $2; for (i = 3; i < NF; i++) svc = svc " " $i; want[svc SUBSEP $NF] = 1; next }
    file == 2 && $1 == "-a" { for (i = 3; $i != "-r"; i++) ; svc = $2; for (k = 3; k < i; k++) svc = svc " " $k
      if ((svc SUBSEP $(i + 1)) in want) sum += $NF }
    END { print sum + 0 }' file=1 "$1" file=2 -
}

lvs_ipvs_batch() { # LABEL FILE: one 'ipvsadm -R' for FILE's lines; fails on any error output
  local label=$1 file=$2 err rc=0
  [[ -s $file ]] || return 0
  awk -v h="$LVS_HOST" '{ print "lvsgen[" h "]: + ipvsadm " $0 }' "$file"
  err=$(ipvsadm -R <"$file" 2>&1) || rc=$?
  # ipvsadm -R goes on after a line fails and reports only the last line's status: any
  # message at all means some line failed. The caller verifies the whole table either way.
  if ((rc != 0)) || [[ -n $err ]]; then
    LVS_IPVS_ERRORS+="$label: ipvsadm -R said: ${err:-exit status $rc}"$'\n'
    return 1
  fi
}

lvs_ipvs() {
  [[ -n $LVS_RULES ]] || return 0
  lvs_step ipvs
  local desired=$LVS_HERE/$LVS_RULES t=$LVS_TMP key svc a b
  local -a recorded=()
  for key in "${!LVS_REC[@]}"; do
    [[ $key == ipvs$'\t'* ]] && recorded+=("${key#ipvs$'\t'}")
  done
  if ((${#recorded[@]} > 0)); then printf '%s\n' "${recorded[@]}" >"$t/recorded"; else : >"$t/recorded"; fi
  lvs_ipvs_live "$t/live" "$desired"
  lvs_ipvs_plan "$desired" "$t/live" "$t/recorded" "$LVS_TABLE_OWNED" "$LVS_DRAIN" >"$t/plan" ||
    lvs_die "cannot read the IPVS table or $desired (see above)"
  [[ -s $t/plan ]] || return 0
  # Split the plan: A (one ipvsadm -R), W (drain), R (one ipvsadm -R).
  : >"$t/A"
  : >"$t/W"
  : >"$t/R"
  awk -v d="$t" '{ tag = $1; sub(/^[AWR] /, ""); print > (d "/" tag) }' "$t/plan"
  local n=0 line
  while IFS= read -r line; do n=$((n + 1)); done <"$t/plan"
  LVS_CHANGES=$((LVS_CHANGES + n))
  if ((LVS_DRY_RUN)); then
    awk -v h="$LVS_HOST" -v s="$LVS_DRAIN_TIMEOUT" '
      $1 == "A" || $1 == "R" { sub(/^[AR] /, ""); print "lvsgen[" h "]: would run: ipvsadm " $0 }
      $1 == "W" { print "lvsgen[" h "]: would wait up to " s " s for " $4 " of " $2 " " $3 " to have no active connection" }' "$t/plan"
    return 0
  fi
  LVS_IPVS_ERRORS=
  # The services this run adds are recorded before they are added: a run that dies halfway
  # still knows they are lvsgen's.
  while read -r a b; do
    [[ -n $a ]] || continue
    lvs_record_add ipvs "$a $b"
  done <<<"$(awk '$1 == "-A" { print $2, $3 }' "$t/A")"
  if lvs_ipvs_batch "add and edit" "$t/A"; then
    if [[ -s $t/W ]]; then
      lvs_step drain
      lvs_drain "$t/plan"
      lvs_step ipvs
    fi
    lvs_ipvs_batch "remove" "$t/R" || true
  fi
  # Verify: ipvsadm -R reports only its last line, so the whole table must now be what the
  # file says.
  lvs_ipvs_live "$t/live" "$desired"
  lvs_ipvs_plan "$desired" "$t/live" "$t/recorded" "$LVS_TABLE_OWNED" 0 >"$t/left" ||
    lvs_die "cannot read the IPVS table after applying the changes"
  if [[ -s $t/left || -n $LVS_IPVS_ERRORS ]]; then
    local msg
    msg="the IPVS table does not match $desired after applying it"$'\n'"${LVS_IPVS_ERRORS}"
    if [[ -s $t/left ]]; then
      msg+="still to do (the kernel refused these; fix the cause and run again):"$'\n'
      msg+=$(sed -e 's/^[AWR] /  ipvsadm /' "$t/left" | head -n 20)
    fi
    lvs_die "$msg"
  fi
  # Services that went away leave the record.
  while read -r svc a b; do
    [[ $svc == -D ]] && lvs_record_drop "ipvs"$'\t'"$a $b"
  done <"$t/R"
  return 0
}

lvs_drain() { # WAITS: wait until the draining real servers have no active connection
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

# --- main -----------------------------------------------------------------------------------------------
lvsgen_main() {
  set -o errtrace
  trap 'lvs_die "line $LINENO: command failed: $BASH_COMMAND"' ERR
  lvs_parse_args "$@"
  lvs_preflight
  LVS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lvsgen.XXXXXX")
  trap 'rm -rf -- "$LVS_TMP"' EXIT
  lvs_record_load
  if ((LVS_BOOT)); then
    # Early boot, before the network: the table is loaded before any VIP can answer.
    lvs_modules
    lvs_sysctls
    lvs_ipvs
  else
    lvs_files
    lvs_enable_unit
    lvs_modules
    lvs_sysctls
    lvs_devices
    lvs_addresses
    lvs_routes
    lvs_ipvs
    lvs_remove_stale
    lvs_systemd_reload
    lvs_copy
  fi
  lvs_step finish
  lvs_record_save
  if ((LVS_DRY_RUN)); then
    if ((LVS_CHANGES == 0)); then
      lvs_say "dry run: no changes: already in the described state"
      exit 0
    fi
    lvs_say "dry run: $LVS_CHANGES change(s) would be made"
    exit 2
  elif ((LVS_CHANGES == 0)); then
    lvs_say "no changes: already in the described state"
  else
    lvs_say "$LVS_CHANGES change(s) made; host '$LVS_HOST' of cluster '$LVS_CLUSTER' is in the described state"
  fi
}
