"""Guest-side driver of the cluster test: builds the namespaces, runs lvsgen's generated
artifacts as they are, and records facts in /test/results.json. It judges nothing: the
host-side pytest (tests/vm/test_vm_cluster.py) turns the facts into one test per check.

/test/topology.json (written by the host side) says what to build:
  hosts: [{name, hostname, role, interface, network, own_address, gateway,
           addresses: [[cidr, dev]...], serve: ["tcp:VIP:PORT", ...], own_units: {name: text}}],
  networks: [cidr...],  client: {address, network},
  vips: [{address, director}], plan: [client requests], big: [{director, vip, port}],
  trees: {"main": "out", "noarp": "out-noarp"},
  mutants: {name: {tree, hosts: [directors]}}  (trees whose tables a generator bug would write)
Each host runs in its own network namespace and, for every command, its own mount and UTS
namespace: its own copy of /etc (so that setup.sh installs files for that host only) and its
own hostname (so that setup.sh's hostname check passes without --force).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

T = "/test"
TOPO = json.load(open(f"{T}/topology.json"))
RESULTS = {}
PY = [sys.executable, "-I", "-S"]
VM = "/vm"


def log(*args):
    print("[%s]" % open("/proc/uptime").read().split()[0], *args, flush=True)


def run(args, check=True, timeout=120, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def nsx(ns, args, **kw):
    return run(["ip", "netns", "exec", ns, *args], **kw)


def host_args(host, args):
    """args run as `host`: its netns, its /etc, its lvsgen state (/var/lib/lvsgen and
    /run/lvsgen), its hostname."""
    name = host["name"]
    for d in (f"{VM}/state/{name}", f"{VM}/run/{name}", "/var/lib/lvsgen", "/run/lvsgen"):
        os.makedirs(d, exist_ok=True)
    script = ('mount --bind "$1" /etc && mount --bind "$2" /var/lib/lvsgen && mount --bind "$3" /run/lvsgen'
              ' && hostname "$4" && shift 4 && exec "$@"')
    return ["ip", "netns", "exec", name, "unshare", "-m", "-u", "sh", "-c", script, "sh",
            f"{VM}/etc/{name}", f"{VM}/state/{name}", f"{VM}/run/{name}", host["hostname"], *args]


def in_host(host, args, **kw):
    return run(host_args(host, args), **kw)


# --- modules: the guest is bare (tests/vm/build-image.sh) ------------------------------------------
def lvs_modules_loaded():
    """The modules lvsgen's artifacts may load (IPVS and its schedulers, dummy, ipip, nf_tables) that are loaded."""
    return sorted(m for m in os.listdir("/sys/module")
                  if (m.startswith("ip_vs") or m in ("dummy", "ipip", "nf_tables")) and os.path.exists(f"/sys/module/{m}/refcnt"))


def unload_lvs_modules():
    """Back to a bare kernel before a path that must load everything itself; returns what is
    still loaded (nothing, or the test of that path fails)."""
    for _ in range(20):
        loaded = lvs_modules_loaded()
        if not loaded:
            return []
        # schedulers before ip_vs, which they use
        run(["modprobe", "-r", "-a", *sorted(loaded, key=lambda m: m == "ip_vs")], check=False)
        time.sleep(0.5)
    return lvs_modules_loaded()


def autoload_refusals():
    """What the kernel tried to autoload since boot (the autoloader is off in the guest)."""
    text = run(["dmesg"], check=False).stdout
    return [line for line in text.splitlines() if "refused module autoload" in line]


# --- topology -----------------------------------------------------------------------------------
def own_network(host):
    """What the host's own network configuration (ifupdown, a cloud's DHCP) gives it before
    lvsgen runs: its NIC up, its address, its default route. lvsgen never configures these."""
    nsx(host["name"], ["ip", "addr", "add", host["own_address"], "dev", host["interface"]])
    nsx(host["name"], ["ip", "link", "set", host["interface"], "up"])
    for nic in host.get("extra_nics", []):
        nsx(host["name"], ["ip", "addr", "add", nic["own_address"], "dev", nic["interface"]])
        nsx(host["name"], ["ip", "link", "set", nic["interface"], "up"])
    nsx(host["name"], ["ip", "route", "add", "default", "via", host["gateway"], "dev", host["interface"]])


def default_routes():
    """Each host's default routes, IPv4 then IPv6."""
    return {h["name"]: (nsx(h["name"], ["ip", "route", "show", "default"]).stdout
                        + nsx(h["name"], ["ip", "-6", "route", "show", "default"]).stdout).strip() for h in TOPO["hosts"]}


def build_topology(network=True):
    """The namespaces; with NETWORK, each host's own network is up as well (own_network), as
    on a running host. Without, the NIC is down and has no address, as early at boot."""
    run(["modprobe", "-a", "veth", "bridge"])  # the test bed's own devices
    os.makedirs(f"{VM}/etc", exist_ok=True)
    for i, net in enumerate(TOPO["networks"]):
        run(["ip", "link", "add", f"br{i}", "type", "bridge"])
        run(["ip", "link", "set", f"br{i}", "up"])
    for i, host in enumerate(TOPO["hosts"] + [TOPO["client"]]):
        name = host["name"]
        run(["ip", "netns", "add", name])
        nsx(name, ["ip", "link", "set", "lo", "up"])
        nsx(name, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
        for j, nic in enumerate([host] + host.get("extra_nics", [])):
            bridge = "br%d" % TOPO["networks"].index(nic["network"])
            run(["ip", "link", "add", f"v{i}x{j}", "type", "veth", "peer", "name", nic["interface"], "netns", name])
            run(["ip", "link", "set", f"v{i}x{j}", "master", bridge, "up"])
        if name == "client":
            nsx(name, ["ip", "link", "set", host["interface"], "up"])
            nsx(name, ["ip", "addr", "add", host["address"], "dev", host["interface"]])
        else:
            # The host's /etc: a copy of the real one, private to this host.
            if not os.path.isdir(f"{VM}/etc-base"):  # one read of /etc over 9p; then tmpfs copies
                run(["cp", "-a", "/etc", f"{VM}/etc-base"])
            shutil.rmtree(f"{VM}/etc/{name}", ignore_errors=True)
            run(["cp", "-a", f"{VM}/etc-base", f"{VM}/etc/{name}"])
            if network:
                own_network(host)
    log("topology up:", ", ".join(h["name"] for h in TOPO["hosts"]))


def teardown():
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        ns = line.split()[0]
        for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
            run(["kill", "-9", pid], check=False)
    time.sleep(0.3)
    run(["ip", "-all", "netns", "delete"], check=False)
    shutil.rmtree(f"{VM}/state", ignore_errors=True)
    shutil.rmtree(f"{VM}/run", ignore_errors=True)
    for i in range(len(TOPO["networks"])):
        run(["ip", "link", "del", f"br{i}"], check=False)


# --- facts ------------------------------------------------------------------------------------
def run_setups(tree, label):
    out = {}
    for host in TOPO["hosts"]:
        p = in_host(host, ["bash", f"{T}/{tree}/{host['name']}/setup.sh"], check=False)
        out[host["name"]] = {"rc": p.returncode, "output": p.stdout + p.stderr}
        log(label, host["name"], "rc", p.returncode)
        if p.returncode != 0:
            log(p.stdout[-1500:] + p.stderr[-1500:])
    return out


def start_servers():
    procs = []
    for host in TOPO["hosts"]:
        if not host["serve"]:
            continue
        p = subprocess.Popen(["ip", "netns", "exec", host["name"], *PY, f"{T}/peer.py", "serve", host["name"], *host["serve"]],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = p.stdout.readline()
        if not line.startswith("serving"):
            raise RuntimeError("server on %s did not start: %s" % (host["name"], line))
        procs.append(p)
    return procs


def client(plan):
    with open(f"{VM}/plan.json", "w") as fh:
        json.dump(plan, fh)
    return json.loads(nsx("client", [*PY, f"{T}/peer.py", "client", f"{VM}/plan.json"], timeout=600).stdout)


def mac(ns, dev):
    return nsx(ns, ["cat", f"/sys/class/net/{dev}/address"]).stdout.strip().lower()


def arp_answers():
    """For each VIP: every MAC that answers an ARP request for it, as the client sees it."""
    cif = TOPO["client"]["interface"]
    out = {}
    for vip in TOPO["vips"]:
        if ":" in vip["address"]:
            continue
        nsx("client", ["ip", "neigh", "flush", "all"], check=False)
        p = nsx("client", ["timeout", "8", "arping", "-w", "3", "-I", cif, vip["address"]], check=False)
        macs = sorted({m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", p.stdout)})
        director = next(h for h in TOPO["hosts"] if h["name"] == vip["director"])
        out[vip["address"]] = {"macs": macs, "director_mac": mac(director["name"], director["interface"])}
    return out


def ifstat(ns, dev, counter):
    return int(nsx(ns, ["cat", f"/sys/class/net/{dev}/statistics/{counter}"]).stdout)


def bypass():
    """Big downloads through each director: bytes the client and the director receive."""
    out = {}
    cif = TOPO["client"]["interface"]
    for item in TOPO["big"]:
        director = next(h for h in TOPO["hosts"] if h["name"] == item["director"])
        c0, d0 = ifstat("client", cif, "rx_bytes"), ifstat(director["name"], director["interface"], "rx_bytes")
        got = client([{"key": "big", "protocol": "tcp", "vip": item["vip"], "port": item["port"], "n": 2, "path": "/big"}])
        out[item["director"]] = {
            "bodies": got["big"],
            "client_rx": ifstat("client", cif, "rx_bytes") - c0,
            "director_rx": ifstat(director["name"], director["interface"], "rx_bytes") - d0,
        }
    return out


def ipvs_stats():
    """{director: {"TCP 192.0.2.100:80": [conns, inpkts, outpkts]}}, once the kernel's 2-second
    estimator has caught up (two equal readings in a row)."""
    out = {}
    for host in TOPO["hosts"]:
        if host["role"] != "director":
            continue
        previous = None
        for _ in range(15):
            text = in_host(host, ["ipvsadm", "-Ln", "--stats", "--exact"]).stdout
            current = {}
            for line in text.splitlines():
                m = re.match(r"^(TCP|UDP|SCTP|FWM)\s+(\S+(?: IPv6)?)\s+(\d+)\s+(\d+)\s+(\d+)", line)
                if m:  # "FWM  1 IPv6": a firewall-mark service shows its family only for IPv6
                    current["%s %s" % (m[1], m[2])] = [int(m[3]), int(m[4]), int(m[5])]
            if current == previous:
                break
            previous = current
            time.sleep(2.2)
        out[host["name"]] = current
    return out


def saved_tables():
    return {h["name"]: in_host(h, ["ipvsadm-save", "-n"]).stdout for h in TOPO["hosts"] if h["role"] == "director"}


SNAPSHOT = r"""
echo '## addresses'; ip -o addr show | sed 's/ *valid_lft.*//'
echo '## links'; ip -o link show | sed 's/ link\/.*//'
echo '## routes'; ip route show table all; ip -6 route show table all
echo '## sysctls'; sysctl -a 2>/dev/null | grep -E '^net\.ipv4\.(conf\.|vs\.|ip_forward)|^net\.ipv6\.conf\.all\.forwarding' | grep -vE '\.(stable_secret|mc_forwarding)'
echo '## ipvs'; if command -v ipvsadm >/dev/null; then ipvsadm -S -n 2>/dev/null; fi
echo '## files'; find /etc/sysctl.d /etc/systemd/network /etc/systemd/system /etc/modules-load.d /etc/lvsgen /var/lib/lvsgen -type f 2>/dev/null | sort | xargs -r sha256sum
echo '## modes'; find /etc/sysctl.d /etc/systemd/network /etc/systemd/system /etc/modules-load.d /etc/lvsgen /var/lib/lvsgen -type f 2>/dev/null | sort | xargs -r stat -c '%a %n'
echo '## links'; find /etc/systemd/system -type l -printf '%p -> %l\n' 2>/dev/null | sort
echo '## record'; if [ -r /var/lib/lvsgen/record ]; then sort /var/lib/lvsgen/record; fi
echo '## tunnels'; ip -d -o link show type ipip 2>/dev/null | sed 's/^[0-9]*: //'; ip -d -o link show type gre 2>/dev/null | sed 's/^[0-9]*: //'
# only where the module is loaded: asking would make the kernel try to autoload it, and the
# cluster test counts every autoload the kernel was asked for
echo '## fou'; if [ -d /sys/module/fou ]; then ip fou show 2>/dev/null; fi
echo '## nft'; if [ -d /sys/module/nf_tables ] && command -v nft >/dev/null; then nft list table inet lvsgen 2>/dev/null; fi
if [ -e /proc/net/ip_vs ]; then
  # without the connection counters, which change as connections expire
  echo '## thresholds'; ipvsadm -L -n --thresholds | awk '$1 == "->" { print $1, $2, $3, $4; next } { print }'
  echo '## timeouts'; ipvsadm -L --timeout
  echo '## daemons'; ipvsadm -L --daemon
fi
"""


def snapshots():
    """Each host's state as one text: what a run that changes nothing must leave byte for byte."""
    return {h["name"]: in_host(h, ["sh", "-c", SNAPSHOT]).stdout for h in TOPO["hosts"]}


def table_facts():
    """{director: {"saved", "thresholds", "timeouts"}}: what the kernel says of its table, for
    the host side to compare with the raw cluster file (tests/vm/expect.py)."""
    out = {}
    for h in TOPO["hosts"]:
        if h["role"] != "director":
            continue
        out[h["name"]] = {"saved": in_host(h, ["ipvsadm", "-S", "-n"]).stdout,
                          "thresholds": in_host(h, ["ipvsadm", "-L", "-n", "--thresholds"]).stdout,
                          "timeouts": in_host(h, ["ipvsadm", "-L", "--timeout"]).stdout}
    return out


def second_run(r, tree=None, label="setup.sh again"):
    """A run on a converged cluster: the state of every host before and after it (which must be
    equal), its output (which must say "no changes"), and the tables after it."""
    r["before"] = snapshots()
    r["second"] = run_setups(tree or TOPO["trees"]["main"], label)
    r["after"] = snapshots()
    r["tables"] = table_facts()
    return r


def wait_for_addresses(timeout=60):
    deadline = time.time() + timeout
    missing = []
    while time.time() < deadline:
        missing = []
        for host in TOPO["hosts"]:
            have = nsx(host["name"], ["ip", "-o", "addr", "show"]).stdout
            for cidr, dev in host["addresses"]:
                if not re.search(r"^\d+: %s\s+inet6? %s " % (re.escape(dev), re.escape(cidr)), have, re.M):
                    missing.append("%s %s on %s" % (host["name"], cidr, dev))
        if not missing:
            return []
        time.sleep(0.5)
    return missing


def boot_unit_command(etc, unit="lvsgen.service"):
    """ExecStart of a generated boot unit, if the host has it."""
    try:
        text = open(f"{etc}/systemd/system/{unit}").read()
    except FileNotFoundError:
        return None
    return re.search(r"^ExecStart=(.+)$", text, re.M)[1].split()


def install_boot_files(tree):
    """What a host has after its first setup.sh run, or after cloud-init: the generated etc/
    in its /etc, the host folder where cloud-init puts it (/var/lib/lvsgen/host), and the boot
    units enabled. Then a reboot: no lvsgen address, device or table is left."""
    for host in TOPO["hosts"]:
        name = host["name"]
        run(["cp", "-a", f"{T}/{tree}/{name}/etc/.", f"{VM}/etc/{name}/"])
        os.makedirs(f"{VM}/state/{name}", exist_ok=True)
        # What cloud-init's write_files puts there: the host folder without cloud-init.yaml.gz
        # itself and the build's manifest.
        run(["cp", "-a", f"{T}/{tree}/{name}/.", f"{VM}/state/{name}/host/"])
        for extra in ("cloud-init.yaml.gz", ".lvsgen-manifest"):
            os.remove(f"{VM}/state/{name}/host/{extra}")
        wants = f"{VM}/etc/{name}/systemd/system/multi-user.target.wants"
        for unit in ("lvsgen.service", "lvsgen-network.service"):
            if boot_unit_command(f"{VM}/etc/{name}", unit):
                os.makedirs(wants, exist_ok=True)
                os.symlink(f"/etc/systemd/system/{unit}", f"{wants}/{unit}")


def run_boot_unit(host, unit):
    """A boot unit's ExecStart, run as that host; None when the host has no such unit."""
    command = boot_unit_command(f"{VM}/etc/{host['name']}", unit)
    if command is None:
        return None
    p = in_host(host, command, check=False, timeout=300)
    log(unit, host["name"], "rc", p.returncode)
    return {"rc": str(p.returncode), "output": p.stdout + p.stderr}


def start_networkd(tree):
    """A boot from the generated files alone, on networkd hosts set up like Ubuntu's cloud
    images: netplan's /run/systemd/network/10-netplan-<nic>.network configures each NIC (its
    address and gateway), or the host's own file in /etc where the cluster file names one
    (network_file). Then, in the order the units give: systemd-modules-load, systemd-sysctl,
    lvsgen.service's ExecStart, systemd-networkd, and once every address is up (the network
    is online), lvsgen-network.service's where the host has one. No step is done by hand."""
    procs = []
    script = r"""
        set -u
        mount -o remount,bind,ro /sys
        mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/network
        for d in /usr/lib/systemd/network /usr/local/lib/systemd/network; do
          if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
        done
        if [ -n "$NETPLAN" ]; then cp "$NETPLAN" /run/systemd/network/; fi
        /lib/systemd/systemd-modules-load || echo "systemd-modules-load failed: $?"
        /lib/systemd/systemd-sysctl || echo "systemd-sysctl failed: $?"
        for k in arp_ignore arp_announce; do cat "/proc/sys/net/ipv4/conf/all/$k"; done > /run/lvsgen/after-sysctl
        if [ "$#" -gt 0 ]; then
          "$@" > /run/lvsgen/boot-unit.log 2>&1
          echo "$?" > /run/lvsgen/boot-unit.rc
        fi
        exec env SYSTEMD_LOG_LEVEL=info SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-networkd
    """
    install_boot_files(tree)
    os.makedirs(f"{VM}/netplan", exist_ok=True)
    for host in TOPO["hosts"]:
        name = host["name"]
        # /etc/sysctl.conf, which Debian links as sysctl.d/99-sysctl.conf, says the opposite
        # of lvsgen: its drop-in must still win (it is named to sort after 99-sysctl.conf).
        with open(f"{VM}/etc/{name}/sysctl.conf", "w") as fh:
            fh.write("net.ipv4.conf.all.arp_ignore = %s\nnet.ipv4.conf.all.arp_announce = 0\n" % (1 if host["role"] == "director" else 0))
        link = f"{VM}/etc/{name}/sysctl.d/99-sysctl.conf"
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("../sysctl.conf", link)
        netplan = ""
        if host["own_units"]:
            # The host's own networkd file, where the cluster file says it has one (network_file).
            for unit, text in host["own_units"].items():
                with open(f"{VM}/etc/{name}/systemd/network/{unit}", "w") as fh:
                    fh.write(text)
        else:
            netplan = f"{VM}/netplan/{name}/10-netplan-{host['interface']}.network"
            os.makedirs(os.path.dirname(netplan), exist_ok=True)
            with open(netplan, "w") as fh:
                fh.write("# what netplan writes for a static NIC\n[Match]\nName=%s\n\n[Network]\nAddress=%s\nGateway=%s\n"
                         % (host["interface"], host["own_address"], host["gateway"]))
        log_file = open(f"{VM}/networkd-{name}.log", "w")
        command = boot_unit_command(f"{VM}/etc/{name}") or []
        procs.append(subprocess.Popen(["env", f"NETPLAN={netplan}", *host_args(host, ["sh", "-c", script, "sh", *command])],
                                      stdout=log_file, stderr=subprocess.STDOUT))
    missing = wait_for_addresses()
    boot = {}
    for host in TOPO["hosts"]:
        rc_file = f"{VM}/run/{host['name']}/boot-unit.rc"
        deadline = time.time() + 120
        while not os.path.exists(rc_file) and time.time() < deadline:
            time.sleep(0.2)
        rc = open(rc_file).read().strip() if os.path.exists(rc_file) else "none"
        out = open(f"{VM}/run/{host['name']}/boot-unit.log").read() if os.path.exists(f"{VM}/run/{host['name']}/boot-unit.log") else ""
        boot[host["name"]] = {"rc": rc, "output": out}
    late = {h["name"]: run_boot_unit(h, "lvsgen-network.service") for h in TOPO["hosts"]}
    after_sysctl = {}
    for host in TOPO["hosts"]:
        path = f"{VM}/run/{host['name']}/after-sysctl"
        after_sysctl[host["name"]] = open(path).read().split() if os.path.exists(path) else None
    logs = {h["name"]: open(f"{VM}/networkd-{h['name']}.log").read() for h in TOPO["hosts"]}
    return procs, {"missing": missing, "boot_unit": boot, "network_unit": late, "logs": logs, "routes": default_routes(),
                   "after_sysctl": after_sysctl}


def phase_setup():
    bare = unload_lvs_modules()
    build_topology()
    r = {"bare": bare, "first": run_setups(TOPO["trees"]["main"], "setup.sh")}
    r["modules"] = lvs_modules_loaded()
    servers = start_servers()
    r["answers"] = client(TOPO["plan"])
    r["arp"] = arp_answers()
    r["bypass"] = bypass()
    r["stats"] = ipvs_stats()
    r["saved"] = saved_tables()
    second_run(r)
    r["mutants"] = mutants()
    for p in servers:
        p.kill()
    teardown()
    return r


def mutants():
    """Each mutant tree (a director table as a generator bug would write it) converged onto the
    running cluster, the same traffic sent again, then the real tree put back."""
    out = {}
    for name, m in TOPO.get("mutants", {}).items():
        hosts = [h for h in TOPO["hosts"] if h["name"] in m["hosts"]]
        r = {"apply": {}, "restore": {}}
        for host in hosts:
            p = in_host(host, ["bash", f"{T}/{m['tree']}/{host['name']}/setup.sh", "--no-drain"], check=False)
            r["apply"][host["name"]] = {"rc": p.returncode, "output": p.stdout + p.stderr}
        r["answers"] = client(TOPO["plan"])
        for host in hosts:
            p = in_host(host, ["bash", f"{T}/{TOPO['trees']['main']}/{host['name']}/setup.sh", "--no-drain"], check=False)
            r["restore"][host["name"]] = {"rc": p.returncode, "output": p.stdout + p.stderr}
        log("mutant", name, "applied and restored")
        out[name] = r
    return out


def phase_noarp():
    build_topology()
    r = {"first": run_setups(TOPO["trees"]["noarp"], "setup.sh without ARP sysctls")}
    r["arp"] = arp_answers()
    teardown()
    return r


def phase_networkd():
    bare = unload_lvs_modules()
    build_topology(network=False)
    procs, r = start_networkd(TOPO["trees"]["main"])
    r["bare"] = bare
    r["modules"] = lvs_modules_loaded()
    servers = start_servers()
    r["answers"] = client(TOPO["plan"])
    r["arp"] = arp_answers()
    r["setup_before"] = snapshots()
    r["setup"] = run_setups(TOPO["trees"]["main"], "setup.sh after networkd")
    r["setup_after"] = snapshots()
    for p in servers + procs:
        p.kill()
    teardown()
    return r


def phase_ifupdown():
    """A reboot on hosts without networkd (ifupdown, NetworkManager): fresh namespaces with
    nothing of lvsgen's, the generated units installed, and only their commands run in boot
    order: lvsgen.service before the network, then the host's own network comes up (what
    ifupdown does), then lvsgen-network.service where the host has one."""
    bare = unload_lvs_modules()
    build_topology(network=False)
    install_boot_files(TOPO["trees"]["main"])
    r = {"bare": bare}
    r["boot_unit"] = {h["name"]: run_boot_unit(h, "lvsgen.service") for h in TOPO["hosts"]}
    r["before_network"] = {h["name"]: nsx(h["name"], ["ip", "-o", "addr", "show"]).stdout for h in TOPO["hosts"]}
    for host in TOPO["hosts"]:
        own_network(host)
    r["network_unit"] = {h["name"]: run_boot_unit(h, "lvsgen-network.service") for h in TOPO["hosts"]}
    r["missing"] = wait_for_addresses(timeout=10)
    r["modules"] = lvs_modules_loaded()
    servers = start_servers()
    r["answers"] = client(TOPO["plan"])
    r["arp"] = arp_answers()
    r["routes"] = default_routes()
    r["setup_before"] = snapshots()
    r["setup"] = run_setups(TOPO["trees"]["main"], "setup.sh after an ifupdown boot")
    r["setup_after"] = snapshots()
    for p in servers:
        p.kill()
    teardown()
    return r


def phase_nat():
    """LVS-NAT: traffic through the director both ways, the director's forwarding policy
    (nftables table inet lvsgen) against a client that routes straight to the real servers,
    and a real server without its route via the director (negative control)."""
    bare = unload_lvs_modules()
    build_topology()
    nat = TOPO["nat"]
    main = TOPO["trees"]["main"]
    director = next(h for h in TOPO["hosts"] if h["role"] == "director")
    r = {"bare": bare, "first": run_setups(main, "setup.sh")}
    r["modules"] = lvs_modules_loaded()
    servers = start_servers()
    r["answers"] = client(TOPO["plan"])
    r["stats"] = ipvs_stats()
    r["routes"] = default_routes()
    r["arp"] = arp_answers()
    r["ruleset"] = in_host(director, ["nft", "-s", "list", "ruleset"]).stdout
    # The client routes the real servers' network via the director, and asks them directly.
    nsx("client", ["ip", "route", "add", nat["rs_network"], "via", nat["director_front"]])
    r["direct_blocked"] = client(nat["direct"])
    # Control: without lvsgen's table the same requests get through, so it is what blocks.
    in_host(director, ["nft", "delete", "table", "inet", "lvsgen"])
    r["direct_open"] = client(nat["direct"])
    r["heal"] = run_setups(main, "setup.sh after the table was deleted")
    r["direct_after_heal"] = client(nat["direct"])
    second_run(r)
    # Control: a real server whose replies do not go back through the director.
    nsx(nat["unrouted"], ["ip", "-6" if ":" in nat["director_front"] else "-4", "route", "del", "default"])
    r["answers_unrouted"] = client(TOPO["plan"])
    for p in servers:
        p.kill()
    teardown()
    return r


def tun_unload_tunnel_modules():
    """fou (and fou6, which uses it) and ip_gre unloaded as well: /init loads every module, and
    unload_lvs_modules leaves these two. Returns the ones still loaded (nothing, or the bare-kernel
    check fails)."""
    for _ in range(20):
        loaded = [m for m in ("fou6", "fou", "ip_gre") if os.path.exists(f"/sys/module/{m}/refcnt")]
        if not loaded:
            return []
        run(["modprobe", "-r", "-a", *loaded], check=False)
        time.sleep(0.5)
    return [m for m in ("fou", "ip_gre") if os.path.exists(f"/sys/module/{m}/refcnt")]


def tun_modules_loaded():
    """lvs_modules_loaded, and the GUE and GRE receivers' modules (fou, ip_gre) where loaded."""
    return sorted(set(lvs_modules_loaded()) | {m for m in ("fou", "ip_gre") if os.path.exists(f"/sys/module/{m}/refcnt")})


def tun_fou(hosts):
    """What `ip fou show` prints on each host (nothing where fou is not loaded)."""
    return {h["name"]: nsx(h["name"], ["ip", "fou", "show"], check=False).stdout.strip() for h in hosts}


def phase_tun():
    """LVS-TUN (IPIP, GUE, GRE), on a bare kernel: traffic, requests arriving on each real
    server's tunnel devices (TOPO["tun"]["devices"]: tunl0, gre0), replies bypassing the
    director, ARP, the GUE ports open on each real server (ip fou); then two negative controls,
    each healed by setup.sh: one real server's GUE port closed by hand (TOPO["tun"]["gue"]), and
    strict reverse-path filtering on every tunnel device (lvsgen sets it loose there, and only
    there). Last, a second run on the converged cluster (second_run)."""
    bare = unload_lvs_modules()
    bare_tunnels = tun_unload_tunnel_modules()
    build_topology()
    main = TOPO["trees"]["main"]
    tun = TOPO["tun"]
    reals = [h for h in TOPO["hosts"] if h["role"] != "director"]

    def rp_filter():
        return {h["name"]: {k: nsx(h["name"], ["sh", "-c", f"cat /proc/sys/net/ipv4/conf/{k}/rp_filter 2>/dev/null || echo none"]).stdout.strip()
                            for k in ("all", h["interface"], *tun["devices"][h["name"]])} for h in reals}

    def rx():
        return {h["name"]: {dev: ifstat(h["name"], dev, "rx_packets") for dev in tun["devices"][h["name"]]} for h in reals}

    r = {"bare": bare, "bare_tunnels": bare_tunnels, "rp_filter_before": rp_filter(), "first": run_setups(main, "setup.sh")}
    r["modules"] = tun_modules_loaded()
    servers = start_servers()
    before = rx()
    r["answers"] = client(TOPO["plan"])
    after = rx()
    r["rx"] = {name: {dev: after[name][dev] - n for dev, n in devs.items()} for name, devs in before.items()}
    r["stats"] = ipvs_stats()
    r["arp"] = arp_answers()
    r["rp_filter"] = rp_filter()
    r["fou"] = tun_fou(reals)
    # negative control: one real server's GUE port closed by hand
    gue = tun.get("gue")
    if gue:
        victim = next(h for h in reals if h["name"] == gue["host"])
        nsx(victim["name"], ["ip", "fou", "del", "port", str(gue["port"])])
        r["gue_fou_closed"] = tun_fou(reals)
        r["gue_closed"] = client([gue["item"]])
        r["gue_heal"] = run_setups(main, "setup.sh after a GUE port was closed")
        r["gue_fou_healed"] = tun_fou(reals)
        r["gue_healed"] = client([gue["item"]])
    # negative control: strict rp_filter on every tunnel device (and conf.all)
    for h in reals:
        keys = ["net.ipv4.conf.all.rp_filter=1"] + [f"net.ipv4.conf.{dev}.rp_filter=1" for dev in tun["devices"][h["name"]]]
        nsx(h["name"], ["sysctl", "-q", "-w", *keys])
    # two requests a service are enough to show that nothing answers; each waits for its timeout
    r["answers_strict"] = client([{**item, "n": min(item["n"], 2)} for item in TOPO["plan"]])
    r["heal"] = run_setups(main, "setup.sh after rp_filter was made strict")
    r["answers_healed"] = client(TOPO["plan"])
    second_run(r)
    for p in servers:
        p.kill()
    teardown()
    return r


def phase_ra():
    """An IPv6 NAT director forwards (net.ipv6.conf.all.forwarding = 1), and a forwarding
    host ignores router advertisements unless accept_ra is 2 on the interface. A router
    advertisement from the client's link, with lvsgen's settings, and again with accept_ra 1
    on the director's NIC (negative control); setup.sh then puts 2 back."""
    build_topology()
    director = next(h for h in TOPO["hosts"] if h["role"] == "director")
    name, nic = director["name"], director["interface"]
    r = {"first": run_setups(TOPO["trees"]["main"], "setup.sh")}

    def ra_routes():
        nsx("client", [*PY, f"{T}/peer.py", "ra", TOPO["client"]["interface"]])
        time.sleep(1.5)
        return nsx(name, ["ip", "-6", "route", "show", "default", "proto", "ra"]).stdout.strip()

    def sysctl(key):
        return nsx(name, ["sysctl", "-n", key]).stdout.strip()

    r["forwarding"] = sysctl("net.ipv6.conf.all.forwarding")
    r["accept_ra"] = sysctl(f"net.ipv6.conf.{nic}.accept_ra")
    r["learned"] = ra_routes()
    nsx(name, ["ip", "-6", "route", "flush", "proto", "ra"], check=False)
    nsx(name, ["sysctl", "-q", "-w", f"net.ipv6.conf.{nic}.accept_ra=1"])
    r["learned_with_1"] = ra_routes()
    r["heal"] = run_setups(TOPO["trees"]["main"], "setup.sh after accept_ra was set to 1")
    r["learned_healed"] = ra_routes()
    teardown()
    return r


def phase_features():
    """Service options and protocols beyond the basics, each with a negative control that
    undoes the option by hand (ipvsadm -E/-e), after which setup.sh must put it back:
    sh-fallback (the hashed real server at weight 0: another one answers; without the flag,
    the connection is refused), one-packet scheduling (no connection entries; without -o,
    entries), the SIP persistence engine (one real server per Call-ID, two Call-IDs on two
    real servers; without the engine, both on one), SCTP, and localnode (the director serves
    its own VIP), GUE and GRE tunnels, connection thresholds, and the IPVS timeouts."""
    bare = unload_lvs_modules()
    run(["modprobe", "sctp"])  # the SCTP peers' own module, as veth is the test bed's
    build_topology()
    main = TOPO["trees"]["main"]
    f = TOPO["features"]
    director = next(h for h in TOPO["hosts"] if h["role"] == "director")
    r = {"bare": bare, "first": run_setups(main, "setup.sh")}
    r["modules"] = lvs_modules_loaded()
    servers = start_servers()
    r["answers"] = client(TOPO["plan"])
    second_run(r)

    def ipvsadm(*args):
        return in_host(director, ["ipvsadm", *args], check=False)

    # the kernel profile: the hash table's size, knobs
    r["ipvs_header"] = ipvsadm("-L", "-n").stdout.splitlines()[0]
    r["knobs"] = {k: in_host(director, ["sysctl", "-n", k]).stdout.strip()
                  for k in (*f["knobs"], f"net.ipv4.conf.{director['interface']}.proxy_arp")}
    # timeouts: set, then changed by hand and put back
    r["timeouts"] = ipvsadm("-L", "--timeout").stdout.strip()
    ipvsadm("--set", "900", "0", "300")
    r["timeouts_by_hand"] = ipvsadm("-L", "--timeout").stdout.strip()
    r["timeouts_heal"] = run_setups(main, "setup.sh after the timeouts were changed")
    r["timeouts_healed"] = ipvsadm("-L", "--timeout").stdout.strip()

    def conns(proto, vip_port):
        out = ipvsadm("-L", "-n", "-c").stdout
        return len([line for line in out.splitlines() if line.split()[:1] == [proto] and vip_port in line.split()])

    # one-packet scheduling
    ops = f["ops"]
    r["ops_conns"] = conns("UDP", ops["vip_port"])
    ipvsadm(*ops["undo"])
    r["ops_off_answers"] = client([ops["item"]])
    r["ops_off_conns"] = conns("UDP", ops["vip_port"])
    r["ops_heal"] = run_setups(main, "setup.sh after -o was taken off")
    # sh-fallback
    sh = f["sh"]
    r["sh_first"] = client([sh["item"]])
    hashed = r["sh_first"][sh["item"]["key"]][0]
    r["sh_hashed"] = hashed
    r["sh_quiesce"] = ipvsadm(*sh["quiesce"][hashed]).returncode if hashed in sh["quiesce"] else -1
    r["sh_fallback"] = client([sh["item"]])
    ipvsadm(*sh["undo"])
    r["sh_no_fallback"] = client([sh["item"]])
    r["sh_heal"] = run_setups(main, "setup.sh after the flag was taken off")
    r["sh_healed"] = client([sh["item"]])
    # tunnels: GUE to a port the real servers open (ip fou), GRE to their gre0
    tun = f["tunnels"]
    reals = [h for h in TOPO["hosts"] if h["role"] != "director"]
    r["fou"] = {h["name"]: nsx(h["name"], ["ip", "fou", "show"]).stdout.strip() for h in reals}
    r["gre0_rx"] = {h["name"]: ifstat(h["name"], "gre0", "rx_packets") for h in reals}
    victim = next(h for h in reals if h["name"] == tun["victim"])
    nsx(victim["name"], ["ip", "fou", "del", "port", str(tun["port"])])
    r["gue_no_port"] = client([tun["item"]])
    r["gue_heal"] = run_setups(main, "setup.sh after a GUE port was closed")
    r["gue_healed"] = client([tun["item"]])
    # connection thresholds: rs1 takes one connection (active or inactive) at a time
    th = f["thresholds"]
    r["th_listing"] = ipvsadm("-L", "-n", "--thresholds").stdout
    r["th_first"] = client([th["item"]])
    ipvsadm(*th["undo"])
    r["th_off"] = client([th["item"]])
    r["th_heal"] = run_setups(main, "setup.sh after the threshold was taken off")
    r["th_healed"] = client([th["item"]])
    # a firewall-mark service: one client, one real server, across the ports the mark groups
    fw = f["fwmark"]
    items = {stage: [i for i in fw["items"] if i["key"].startswith(stage + " ")] for stage in ("first", "off", "no-table", "healed")}
    res = {"nft": in_host(director, ["nft", "list", "table", "inet", "lvsgen"], check=False).stdout,
           "thresholds": ipvsadm("-L", "-n", "--thresholds").stdout}
    answers = client(items["first"])
    ipvsadm(*fw["undo"])  # no persistence
    answers.update(client(items["off"]))
    res["heal_persistence"] = run_setups(main, "setup.sh after persistence was taken off the mark service")
    in_host(director, ["nft", "delete", "table", "inet", "lvsgen"])
    answers.update(client(items["no-table"]))
    res["heal_table"] = run_setups(main, "setup.sh after the marks were deleted")
    answers.update(client(items["healed"]))
    res["answers"] = answers
    r["fwmark"] = res
    # the SIP persistence engine
    sip = f["sip"]
    r["sip"] = client(sip["items"])
    ipvsadm(*sip["undo"])  # persistence by client address, no engine
    r["sip_off"] = client(sip["items_off"])
    r["sip_heal"] = run_setups(main, "setup.sh after the engine was taken off")
    r["sip_healed"] = client(sip["items_healed"])
    r["end"] = second_run({}, label="setup.sh at the end")
    for p in servers:
        p.kill()
    teardown()
    return r


def run_setup(host, tree, *args):
    """One host's setup.sh of TREE, with ARGS."""
    p = in_host(host, ["bash", f"{T}/{tree}/{host['name']}/setup.sh", *args], check=False)
    log("setup.sh", *args, "of", tree, "on", host["name"], "rc", p.returncode)
    return {"rc": p.returncode, "output": p.stdout + p.stderr}


def phase_hidden():
    """Options /proc/net/ip_vs cannot show, taken away after a first run on a director whose
    kernel HZ no file tells (the guest has no /boot/config): tree hidden-with has them and a
    persistent service, tree hidden-without is the same file without them. The first run of
    hidden-with on a bare kernel; then a dry run of hidden-without (it must see the change), the
    run itself, the table, and a dry run after it (nothing left to do)."""
    bare = unload_lvs_modules()
    build_topology()
    director = next(h for h in TOPO["hosts"] if h["role"] == "director")
    release = open("/proc/sys/kernel/osrelease").read().strip()
    r = {"bare": bare, "boot_config": os.path.exists(f"/boot/config-{release}")}
    r["first"] = run_setups(TOPO["trees"]["hidden-with"], "setup.sh with the hidden options")
    r["marker"] = os.path.exists(f"{VM}/state/{director['name']}/ipvs-hidden")
    r["hz_known"] = os.path.exists(f"{VM}/run/{director['name']}/hz")
    r["tables_with"] = table_facts()
    r["dry"] = run_setup(director, TOPO["trees"]["hidden-without"], "--dry-run")
    r["drop"] = run_setup(director, TOPO["trees"]["hidden-without"])
    r["tables_without"] = table_facts()
    r["dry_after"] = run_setup(director, TOPO["trees"]["hidden-without"], "--dry-run")
    r["marker_after"] = os.path.exists(f"{VM}/state/{director['name']}/ipvs-hidden")
    teardown()
    return r


def nd_answers():
    """For each IPv6 VIP: every MAC that answers a neighbour solicitation for it, as the client
    sees it, and the director's."""
    cif = TOPO["client"]["interface"]
    source = TOPO["client"]["address"].split("/")[0]
    out = {}
    for vip in TOPO["vips"]:
        if ":" not in vip["address"]:
            continue
        macs = json.loads(nsx("client", [*PY, f"{T}/peer.py", "ns", cif, source, vip["address"]]).stdout)
        director = next(h for h in TOPO["hosts"] if h["name"] == vip["director"])
        out[vip["address"]] = {"macs": macs, "director_mac": mac(director["name"], director["interface"])}
    return out


def phase_dr6():
    """IPv6 LVS-DR: the split, replies bypassing the director (OutPkts 0), and only the director
    answering neighbour solicitations for each VIP. Negative control: each VIP put by hand on
    the NIC of a real server that holds it (TOPO["dr6"]["controls"]: {VIP: real server}),
    where neighbour discovery answers for it, gives a second answer. Last, a second run on the
    converged cluster (second_run)."""
    bare = unload_lvs_modules()
    build_topology()
    main = TOPO["trees"]["main"]
    hosts = {h["name"]: h for h in TOPO["hosts"]}
    controls = TOPO["dr6"]["controls"]
    r = {"bare": bare, "first": run_setups(main, "setup.sh")}
    r["modules"] = lvs_modules_loaded()
    servers = start_servers()
    r["answers"] = client(TOPO["plan"])
    r["stats"] = ipvs_stats()
    r["nd"] = nd_answers()
    r["macs"] = {h["name"]: mac(h["name"], h["interface"]) for h in TOPO["hosts"]}
    for vip, name in controls.items():
        nsx(name, ["ip", "addr", "add", f"{vip}/128", "dev", hosts[name]["interface"], "nodad"])
    r["nd_control"] = nd_answers()
    for vip, name in controls.items():
        nsx(name, ["ip", "addr", "del", f"{vip}/128", "dev", hosts[name]["interface"]])
    second_run(r)
    for p in servers:
        p.kill()
    teardown()
    return r


def phase_sync():
    """Connection synchronisation between two directors: connections made through the master
    appear in the backup's connection table. Negative control: the backup's daemon restarted by
    hand with another syncid sees none of the new ones; setup.sh restarts it as described, and
    the next ones appear again."""
    bare = unload_lvs_modules()
    build_topology()
    main = TOPO["trees"]["main"]
    s = TOPO["sync"]
    master = next(h for h in TOPO["hosts"] if h["name"] == s["master"])
    backup = next(h for h in TOPO["hosts"] if h["name"] == s["backup"])
    r = {"bare": bare, "first": run_setups(main, "setup.sh")}
    servers = start_servers()

    def daemons(host):
        return in_host(host, ["ipvsadm", "-L", "--daemon"], check=False).stdout.strip()

    def sources(host):
        """The client endpoints of the connections to the VIP in HOST's connection table."""
        out = in_host(host, ["ipvsadm", "-L", "-n", "-c"], check=False).stdout
        return sorted({line.split()[3] for line in out.splitlines() if len(line.split()) >= 6 and line.split()[4] == s["vip_port"]})

    def traffic(label):
        r[label] = client(TOPO["plan"])
        time.sleep(s["wait"])  # the master sends its sync buffer every second or two
        return sources(master), sources(backup)

    r["daemons"] = {"master": daemons(master), "backup": daemons(backup)}
    r["master_seen"], r["backup_seen"] = traffic("answers")
    in_host(backup, ["ipvsadm", "--stop-daemon", "backup"])
    in_host(backup, ["ipvsadm", "--start-daemon", "backup", "--mcast-interface", backup["interface"], "--syncid", str(s["other_syncid"])])
    r["master_seen_control"], r["backup_seen_control"] = traffic("answers_control")
    r["heal"] = run_setups(main, "setup.sh after the backup's syncid was changed")
    r["daemons_healed"] = {"master": daemons(master), "backup": daemons(backup)}
    r["master_seen_healed"], r["backup_seen_healed"] = traffic("answers_healed")
    second_run(r)
    for p in servers:
        p.kill()
    teardown()
    return r


def main():
    phases = {"setup": phase_setup, "noarp": phase_noarp, "networkd": phase_networkd, "ifupdown": phase_ifupdown,
              "nat": phase_nat, "tun": phase_tun, "ra": phase_ra, "features": phase_features, "sync": phase_sync, "dr6": phase_dr6,
              "hidden": phase_hidden}
    for name in TOPO["phases"]:
        t0 = time.time()
        try:
            RESULTS[name] = phases[name]()
        except Exception as err:  # recorded; the host side reports it as that phase's failure
            RESULTS[name] = {"error": "%s: %s" % (type(err).__name__, err)}
            log(name, "failed:", err)
            teardown()
        RESULTS.setdefault("timing", {})[name] = round(time.time() - t0, 1)
        log("phase", name, "took", RESULTS["timing"][name], "s")
    RESULTS["autoload_refused"] = autoload_refusals()
    with open(f"{T}/results.json", "w") as fh:
        json.dump(RESULTS, fh, indent=1, sort_keys=True)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    os.makedirs(VM, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", VM], check=True)
    main()
