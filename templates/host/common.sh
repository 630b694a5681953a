# shellcheck shell=bash
# lvsgen host engine: the same file on every host, sourced by the host's generated setup.sh.
#
# setup.sh only declares what its host must look like (the LVS_* arrays below) and calls
# lvsgen_main. The engine holds every bit of logic: read the live state once, compute the
# delta, apply it in as few commands as possible, verify, and keep a record of what lvsgen
# added so that it can later remove exactly that and nothing else.
#
# lvsgen assembles the engine from parts in templates/host/, in the order lvsgen/engine.py
# lists them: one part per concern, each using only the parts before it, and each awk program
# in a file of its own (embedded as a variable LVS_AWK_*). main.sh, the last part, runs the
# steps and says which part holds each. This part, common.sh: the data setup.sh declares, the
# run's flags and counters, the messages (lvs_say; lvs_die, which names the step lvs_step set)
# and lvs_run, the one place a command that changes something is run.
#
# Data setup.sh declares before it calls lvsgen_main (every element is one shell word or a
# few words split on spaces; lvsgen's schema allows no spaces in any of them):
#   LVS_HOST LVS_HOSTNAME LVS_CLUSTER    names
#   LVS_FILES      ("SRC MODE" ...)     files of the host folder; each installs to /SRC
#   LVS_UNITS      (SRC ...)            boot units among them, enabled like 'systemctl enable'
#   LVS_NICS       (dev ...)            the host's own interfaces: must exist, never changed
#   LVS_HOST_ADDRESSES ("cidr dev" ...) the host's own addresses: must be there, never changed
#   LVS_MODULES    (name ...)           kernel modules
#   LVS_SYSCTLS    ("key value" ...)    live sysctls (the same as the sysctl.d file)
#   LVS_DUMMIES    (dev ...)            dummy devices lvsgen creates
#   LVS_NOARP      (dev ...)            devices with ARP off
#   LVS_UP         (dev ...)            devices that must be up (lvsgen's, or a NIC it owns)
#   LVS_ADDRESSES  ("cidr dev [nodad]" ...)
#   LVS_ROUTES     ("-4|-6 via dev" ...) default routes
#   LVS_RULES      host-folder path of the ipvsadm rules file ('' on real servers)
#   LVS_IMAGE      host-folder path of its image as /proc/net/ip_vs shows it, or '' (directors)
# and, on directors only:
#   LVS_TABLE_OWNED 1: every IPVS service this file does not describe is removed;
#                   0: only services lvsgen added are (the rest belong to someone else)
#   LVS_DRAIN_TIMEOUT seconds to wait for a removed real server's active connections to end
#   LVS_NFT        host-folder path of the nftables table inet lvsgen (a NAT director's
#                  forwarding policy, the marks of firewall-mark services), or ''
#
# Exit status: 0 done (or, with --dry-run, nothing to do); 2 with --dry-run when changes are
# pending; 1 on any error, with the step that failed named.

LVSGEN_STATE=${LVSGEN_STATE:-/var/lib/lvsgen}   # the record, and the copy the boot unit runs
LVSGEN_RUN=${LVSGEN_RUN:-/run/lvsgen}           # per-boot facts (lock, kernel HZ)
LVSGEN_PROC_IPVS=${LVSGEN_PROC_IPVS:-/proc/net/ip_vs} # the kernel's table (tests point it at a dump)
LVSGEN_PROC_SYS=${LVSGEN_PROC_SYS:-/proc/sys}         # the sysctls (tests point it at a folder)
# A global that one part sets and another reads looks unused to shellcheck, which checks
# each part on its own (tests/test_engine.py): each such line turns SC2034 off for itself
# alone, and names the part that reads it.
LVS_STEP=start
LVS_DRY_RUN=0
# shellcheck disable=SC2034 # read in preflight.sh
LVS_FORCE=0
# shellcheck disable=SC2034 # read in most parts
LVS_BOOT=0 # 1: early boot (--boot), before the network; 2: once it is up (--boot-network)
# shellcheck disable=SC2034 # read in ipvs.sh
LVS_DRAIN=1
LVS_CHANGES=0
# shellcheck disable=SC2034 # read in files.sh
LVS_UNITS_CHANGED=0

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
  # shellcheck disable=SC2034 # read in net.sh
  [[ $1 == chmod ]] || LVS_ADDRS_STALE=1
  local rc=0
  "$@" || rc=$?
  ((rc == 0)) || lvs_die "'$*' failed with exit status $rc"
}


lvs_in() { # NEEDLE ITEM...: is NEEDLE one of the items?
  local needle=$1 item
  shift
  for item in "$@"; do
    [[ $item == "$needle" ]] && return 0
  done
  return 1
}
