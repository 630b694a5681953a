"""What a cluster file says must happen in the VM, read from the raw JSON document.

Nothing here imports lvsgen: if lvsgen misread the file (dropped a real server, flattened a
weight, lost a VIP), its artifacts would be wrong and these expectations would still be
right, so the VM checks fail. The only knowledge taken from outside the document is what
the user reads too: the defaults the JSON Schema declares, the documented placement of DR
VIPs (a director's IPv4 VIPs on its dummy device `lvs0`, its IPv6 VIPs on its interface; a
real server's on `lvs0`, or `lo`), how ipvsadm prints a table, and what the IPVS schedulers do.

It covers:
- the services the client is sent to (`Cluster.services`: one entry per service, and per
  port a firewall-mark service tries: each single port, and the first, the last and one inside
  port of a range), how many requests each gets and which answers are right
  (`expected_answers`, `check_answers`);
- the addresses each host must hold (`Cluster.addresses`);
- each director's IPVS table as `ipvsadm -S -n` prints it (`expected_table`), its connection
  thresholds as `ipvsadm -L -n --thresholds` lists them (`expected_thresholds`,
  `parse_thresholds`) and its timeouts (`expected_timeouts`, `parse_timeouts`), all three
  compared with what a director shows by `table_problems`.

Every field the schema allows on a service, its persistence and tunnel, and a real server is
read (tests/test_vm_expect.py holds that list to the schema's). What cannot be derived with
confidence raises ValueError ("expect.py cannot yet compute ..."), so that a new example cannot
be half-checked by accident: a field the schema gains, a localnode real server under NAT or TUN
(only DR's has been seen in the VM), an IPv6 address with an IPv4 tail, and the combinations
lvsgen refuses anyway; for the answers, a hashing scheduler that may hash the client to a
quiesced real server, which it then refuses.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "cluster.schema.json").read_text())


def _default(definition: str, prop: str):
    return SCHEMA["$defs"][definition]["properties"][prop]["default"]


DEFAULT_PROTOCOL = _default("service", "protocol")
DEFAULT_SCHEDULER = _default("service", "scheduler")
DEFAULT_ONE_PACKET = _default("service", "one_packet")
DEFAULT_TUNNEL_TYPE = SCHEMA["$defs"]["service"]["properties"]["tunnel"]["properties"]["type"]["default"]
DEFAULT_TUNNEL_CHECKSUM = SCHEMA["$defs"]["service"]["properties"]["tunnel"]["properties"]["checksum"]["default"]
DEFAULT_WEIGHT = _default("real_server", "weight")
DEFAULT_LOCALNODE = _default("real_server", "localnode")
DEFAULT_VIP_DEVICE = _default("host", "vip_device")
DUMMY = "lvs0"  # README: "dummy (default: the device lvs0)"
TUNNEL = "tunl0"
# The kernel's IPVS timeouts (tcp, tcpfin, udp), which a fresh network namespace has and which a
# timeout the file leaves out keeps (the schema's ipvs_timeouts: "the kernel's value (900, 120, 300)").
KERNEL_TIMEOUTS = (900, 120, 300)

# Every field of a service, its persistence, its tunnel and a real server that expected_table
# reads. Anything else in the file is refused: tests/test_vm_expect.py checks that these are
# exactly the schema's, so a field the schema gains must be taught here first.
SERVICE_FIELDS = frozenset({"protocol", "port", "fwmark", "ports", "scheduler", "forwarding", "persistence",
                            "tunnel", "scheduler_flags", "one_packet", "real_servers"})
PERSISTENCE_FIELDS = frozenset({"timeout", "granularity", "engine"})
TUNNEL_FIELDS = frozenset({"type", "port", "checksum"})
REAL_SERVER_FIELDS = frozenset({"host", "address", "port", "weight", "upper_threshold", "lower_threshold", "localnode"})

PROTOCOL_FLAG = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}  # ipvsadm's service options
PROTOCOL_LISTED = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}  # ipvsadm -L's names for them
FORWARDING_FLAG = {"dr": "-g", "nat": "-m", "tun": "-i"}
CHECKSUM_FLAG = {"none": "--tun-nocsum", "csum": "--tun-csum", "remcsum": "--tun-remcsum"}
# Scheduler flags in the kernel's bit order (IP_VS_SVC_F_SCHED1: fallback, SCHED2: port),
# which is the order ipvsadm prints them in, whatever the order of the file.
FLAG_BITS = ("fallback", "port")

SH_BUCKETS = 256  # the sh scheduler's table (CONFIG_IP_VS_SH_TAB_BITS, 8 by default and in Debian's kernel)
MISS_RATE = 1e-9  # the false-failure rate allowed to a check that depends on random ports
THRESHOLD_MARGIN = 4  # runs of a service's requests whose connections may still count at once


def marked_ports(items: list) -> list[int]:
    """The ports the client tries for a firewall-mark service's "ports": each single port, and
    of a range "FIRST-LAST" the first, the last and the one in the middle (a range of two
    ports: both; of one: that one), in the order written, each once."""
    out: list[int] = []
    for item in items:
        if isinstance(item, int):
            picked = [item]
        else:
            first, last = (int(p) for p in item.split("-"))
            if first > last:
                raise ValueError(f"expect.py cannot read the port range {item!r}: FIRST is above LAST")
            picked = [first, (first + last) // 2, last]
        for port in picked:
            if port not in out:
                out.append(port)
    return out


def _refuse_unknown(where: str, raw: dict, known: frozenset) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"expect.py cannot yet compute {', '.join(unknown)} ({where})")


class Cluster:
    """The document, with the schema's defaults filled in, as plain dicts and lists.

    `services` has one entry per port the client is sent to, as a dict: "key" (the plan's and
    the answers' key, "tcp 192.0.2.1:80"), "ipvs_key" (the service as /proc/net/ip_vs and
    `ipvsadm -L` name it: "TCP 192.0.2.1:80", "FWM 7", "FWM 5 IPv6"), "group" (the service in
    the file, "$.vips.NAME.services[I]": the entries of one firewall-mark service share it),
    "protocol", "vip", "port", "director", "forwarding", "ports" (managed real server -> the
    port it listens on), "scheduler", "scheduler_flags", "persistent", "tunnel", "fwmark",
    "weights" (managed real server -> weight, as written), "unmanaged" ([(address, weight)]),
    "upper_thresholds" (managed real server -> upper_threshold, 0 for none), "group_size" (the
    entries of its group)."""

    def __init__(self, source: Path | str | dict):
        self.doc = source if isinstance(source, dict) else json.loads(Path(source).read_text())
        self.hosts: dict[str, dict] = self.doc["hosts"]
        self.vips: list[dict] = []
        self.services: list[dict] = []
        for vip_name, vip in self.doc["vips"].items():
            address = str(ipaddress.ip_address(vip["address"]))
            self.vips.append({"name": vip_name, "address": address, "director": vip["director"]})
            for index, raw in enumerate(vip["services"]):
                if raw.get("forwarding") not in ("dr", "nat", "tun"):
                    raise ValueError(f"expect.py covers DR, NAT and TUN services only: {vip_name} {raw}")
                group = f"$.vips.{vip_name}.services[{index}]"
                # A firewall-mark service is one entry per port the client tries, each with the
                # mark and the service's group: every port answers as the service does.
                ports = marked_ports(raw["ports"]) if "fwmark" in raw else [raw["port"]]
                for port in ports:
                    self._service(group, address, vip, {**raw, "port": port})
                    self.services[-1]["group_size"] = len(ports)

    def _service(self, group: str, address: str, vip: dict, svc: dict) -> None:
        protocol = svc.get("protocol", DEFAULT_PROTOCOL)
        members = {}
        ports = {}
        uppers = {}
        unmanaged = []
        for rs in svc["real_servers"]:
            weight = rs.get("weight", DEFAULT_WEIGHT)
            if "host" in rs:
                members[rs["host"]] = weight
                uppers[rs["host"]] = rs.get("upper_threshold", 0)
                # the port the real server listens on: NAT may remap it
                ports[rs["host"]] = rs.get("port", svc["port"]) if svc["forwarding"] == "nat" else svc["port"]
            else:
                unmanaged.append((rs["address"], weight))
        self.services.append({
            "key": f"{protocol} {address}:{svc['port']}",
            "ipvs_key": (f"FWM {svc['fwmark']}" + (" IPv6" if ":" in address else "")) if "fwmark" in svc
            else f"{protocol.upper()} {address if ':' not in address else '[' + address + ']'}:{svc['port']}",
            "group": group,
            "protocol": protocol,
            "vip": address,
            "port": svc["port"],
            "director": vip["director"],
            "forwarding": svc["forwarding"],
            "ports": ports,
            "scheduler": svc.get("scheduler", DEFAULT_SCHEDULER),
            "scheduler_flags": list(svc.get("scheduler_flags", [])),
            "persistent": "persistence" in svc,
            "tunnel": svc.get("tunnel", {}).get("type", DEFAULT_TUNNEL_TYPE) if svc["forwarding"] == "tun" else None,
            "fwmark": svc.get("fwmark"),
            "weights": members,  # managed real server -> weight, as written
            "unmanaged": unmanaged,
            "upper_thresholds": uppers,
        })

    def directors(self) -> list[str]:
        return [name for name, h in self.hosts.items() if h["role"] == "director"]

    def hostname(self, name: str) -> str:
        return self.hosts[name].get("hostname", name)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(cidr, device) every host must have: its own address, and its VIPs."""
        host = self.hosts[name]
        out = [(str(ipaddress.ip_interface(host["address"])), host["interface"])]
        for svc in self.services:
            prefix = 32 if ":" not in svc["vip"] else 128
            if host["role"] == "director" and svc["director"] == name:
                where = DUMMY if prefix == 32 else host["interface"]
            elif host["role"] != "director" and name in svc["weights"] and svc["forwarding"] == "dr":
                where = DUMMY if host.get("vip_device", DEFAULT_VIP_DEVICE) == "dummy" else "lo"
            elif host["role"] != "director" and name in svc["weights"] and svc["forwarding"] == "tun":
                # README: a TUN real server holds the VIP on tunl0, or on gre0 for a gre tunnel
                where = "gre0" if svc["tunnel"] == "gre" else TUNNEL
            else:
                continue
            if (f"{svc['vip']}/{prefix}", where) not in out:
                out.append((f"{svc['vip']}/{prefix}", where))
        return out


# --- the answers the client must get ------------------------------------------------------------


def _requests_to_see_every(shares: list[float]) -> int:
    """The fewest requests n, at least 3 per real server, after which the chance that one real
    server got none is below MISS_RATE, each request landing on a server with at least the
    smallest of SHARES: P(some server missed) <= k * (1 - p)^n, k servers, p the smallest share."""
    k, p = len(shares), min(shares)
    n = 3 * k
    if p >= 1:
        return n
    return max(n, math.floor(math.log(MISS_RATE / k) / math.log(1 - p)) + 1)


def _rule(svc: dict) -> tuple[int, dict[str, int] | None, str, str]:
    """(requests, exact split or None, mode, rule) for one entry. MODE says what check_answers
    checks beyond "N answers, each from a real server with weight > 0": "split" (exactly SPLIT),
    "one" (every answer from one real server; across all the ports of a firewall-mark
    service too), "every" (every such real server at least once) or "members" (nothing more)."""
    active = {host: w for host, w in svc["weights"].items() if w > 0}
    assert all(w == 0 for _, w in svc["unmanaged"]), "a test cluster's unmanaged real servers must have weight 0"
    quiesced = len(active) < len(svc["weights"]) + len(svc["unmanaged"])
    k = len(active)
    scheduler, flags = svc["scheduler"], svc.get("scheduler_flags", [])
    hashed_port = f"{scheduler}-port" in flags
    fallback = f"{scheduler}-fallback" in flags

    if k == 0:
        return 0, {}, "split", "no real server has a weight above 0: nothing to ask"
    refuses = scheduler == "dh" or (scheduler in ("sh", "mh") and not fallback)
    if refuses and quiesced:
        # The client may hash to a quiesced real server, and these refuse it rather than pick
        # another (sh and mh without their fallback flag, dh always): whether it is refused
        # depends on the hash of the client's (or the VIP's) address, which the file does not say.
        raise ValueError(f"expect.py cannot yet compute the answers of {svc['key']}: a {scheduler} service with a "
                         f"real server at weight 0 refuses the clients that hash to it")
    hash_n = 0
    if hashed_port and not svc["persistent"]:
        # One client, a new source port every request: the requests spread at random.
        if scheduler == "sh":
            # sh hashes (address, port) onto SH_BUCKETS buckets, given out in turn, a real
            # server taking max(weight, 1) of them a turn: each active one holds at least
            # floor(256 / turn) * weight buckets, the share of the requests it gets.
            turn = sum(max(w, 1) for w in svc["weights"].values()) + len(svc["unmanaged"])
            shares = [(SH_BUCKETS // turn) * w / SH_BUCKETS for w in active.values()]
            if min(shares) == 0:
                raise ValueError(f"expect.py cannot yet compute the answers of {svc['key']}: its weights add up to more "
                                 f"than sh's {SH_BUCKETS} buckets, so a real server may hold none")
        else:
            # mh (Maglev) gives a real server a share of its table close to weight / sum of
            # weights; 0.9 of that leaves room for the table's rounding.
            total = sum(active.values())
            shares = [0.9 * w / total for w in active.values()]
        # False failure <= k * (1 - p)^n < MISS_RATE (2 real servers of equal weight: 31
        # requests for sh, 36 for mh; 3 x k = 6 requests missed one of them 3% of the time).
        hash_n = _requests_to_see_every(shares)

    # A real server at its upper threshold takes no new connection until its count falls, and
    # a connection counts until it expires, minutes after its request: which one answers then
    # depends on what earlier requests left. A threshold far above what the service's checks
    # send (all its ports, THRESHOLD_MARGIN runs of them) changes nothing.
    uppers = svc.get("upper_thresholds", {})
    limit = THRESHOLD_MARGIN * svc.get("group_size", 1) * max(4, 3 * k, 2 * sum(active.values()), hash_n)
    limited = {host: uppers[host] for host in active if 0 < uppers.get(host, 0) < limit}
    if limited:
        if refuses or len(limited) == k:
            raise ValueError(f"expect.py cannot yet compute the answers of {svc['key']}: requests may be refused once "
                             f"{sorted(limited)} reach their connection thresholds ({scheduler})")
        threshold = min(limited.values())
        return 3 * k, None, "members", f"a real server has a connection threshold ({threshold}): only real servers answer"
    if hash_n:
        return hash_n, None, "every", (f"{scheduler} with {scheduler}-port: every real server at least once in "
                                       f"{hash_n} requests (a false failure below {MISS_RATE:g})")
    if svc["persistent"]:
        return 4, None, "one", "persistent: one real server for every request"
    if scheduler in ("sh", "mh"):
        # Without the port flag sh and mh hash the client's address only: one client, one real
        # server (the fallback, if any, is a fixed function of the same hash).
        return 4, None, "one", f"{scheduler} hashes the client's address: one real server for every request"
    if scheduler == "dh":
        return 4, None, "one", "dh hashes the VIP: one real server for every request"
    if scheduler == "fo":
        top = max(active.values())
        first = [host for host, w in active.items() if w == top]
        if len(first) == 1:
            return 4, {first[0]: 4}, "split", "fo: the real server of the highest weight answers every request"
        return 4, None, "one", "fo: one of the real servers of the highest weight answers every request"
    if scheduler == "rr":
        return 2 * k, {host: 2 for host in active}, "split", "rr: 2 each"
    if scheduler == "wrr":
        return 2 * sum(active.values()), {host: 2 * w for host, w in active.items()}, "split", "wrr: 2 x weight each"
    if scheduler in ("lc", "wlc"):
        # Each new connection goes to a real server with the fewest (weighted) connections, and
        # a connection is counted until it expires (minutes): from equal counts the first k
        # requests go to k different real servers, so 3 x k leave a margin of 2 rounds.
        return 3 * k, None, "every", f"{scheduler}: every real server at least once"
    # sed, nq, ovf, lblc, lblcr (by the live connection counts, which sequential requests keep
    # near 0, so usually one real server, but not always) and twos (random): only members.
    return 3 * k, None, "members", f"{scheduler}: only real servers answer (which ones depends on timing or chance)"


def expected_answers(svc: dict) -> tuple[int, dict[str, int] | None, str]:
    """(requests to send, exact split or None, rule) for one entry of Cluster.services.

    - persistent: 4 requests, one real server for all (across all the ports of a firewall-mark
      service too);
    - rr: 2 per real server with weight > 0, exactly; wrr: 2 x weight each, exactly;
    - sh, mh without their port flag: 4 requests, one real server (they hash the client's
      address only); dh: the same (it hashes the VIP); fo: 4, all from the highest weight;
    - sh, mh with sh-port/mh-port (not persistent): the client's random source ports spread
      the requests, so "every real server at least once" needs enough of them: the fewest n
      with k * (1 - p)^n < 1e-9, k real servers, p the smallest one's share of the hash table
      (sh: floor(256 / turn) x weight of its 256 buckets; mh: 0.9 x weight / total weight).
      That bounds the false-failure rate below 1e-9 (2 equal servers: 31 requests for sh, 36
      for mh; the 3 x k = 6 requests of before failed 2 x 2^-6, about 3% of the time);
    - lc, wlc: 3 per real server, every one at least once (deterministic: a new connection
      goes to the least loaded, and finished ones count until they expire);
    - sed, nq, ovf, lblc, lblcr, twos, and a service whose connection threshold the requests may
      reach: 3 per real server, answered by real servers only (no stronger rule holds);
    - no real server with a weight above 0: no request.
    ValueError for sh and mh without their fallback flag, and dh, when a real server is at
    weight 0 (or at a threshold the requests may reach): the client may hash to it and be refused.
    """
    n, split, _, rule = _rule(svc)
    return n, split, rule


def check_answers(cluster: Cluster, answers: dict) -> list[str]:
    """Every problem with the answers the client got, service by service; then, for each
    firewall-mark service whose rule is one real server (persistence, sh without its port
    flag, ...), the answers of all its ports together: the mark makes them one service."""
    problems = []
    groups: dict[str, list[tuple[dict, list, str, str]]] = {}
    for svc in cluster.services:
        got = answers.get(svc["key"], [])
        n, split, mode, rule = _rule(svc)
        counts = {name: got.count(name) for name in set(got)}
        members = {host for host, w in svc["weights"].items() if w > 0}
        groups.setdefault(svc["group"], []).append((svc, got, mode, rule))
        if len(got) != n or set(counts) - members:
            problems.append(f"{svc['key']}: {got} (expected {n} answers from {sorted(members)})")
        elif mode == "split" and counts != split:
            problems.append(f"{svc['key']}: {counts}, expected {split} ({rule})")
        elif mode == "one" and len(counts) != 1:
            problems.append(f"{svc['key']}: {counts}, expected one real server ({rule})")
        elif mode == "every" and set(counts) != members:
            problems.append(f"{svc['key']}: {counts}, expected every one of {sorted(members)} ({rule})")
    for group, entries in groups.items():
        if len(entries) < 2 or entries[0][2] != "one":
            continue
        got = [name for _, answered, _, _ in entries for name in answered]
        counts = {name: got.count(name) for name in sorted(set(got))}
        if len(counts) > 1:
            ports = ", ".join(str(svc["port"]) for svc, _, _, _ in entries)
            problems.append(f"{group} ({entries[0][0]['ipvs_key']}, ports {ports}): {counts} across its ports, "
                            f"expected one real server for all of them ({entries[0][3]})")
    return problems


# --- the IPVS table a director must have ---------------------------------------------------------


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text)
    if address.version == 6 and (int(address) >> 48 == 0 or "%" in text):
        # ::a.b.c.d and ::ffff:a.b.c.d: ipvsadm (inet_ntop) writes the IPv4 part dotted, Python
        # may not; a scope is not an IPVS address at all.
        raise ValueError(f"expect.py cannot yet compute how ipvsadm spells the address {text}")
    return address


def _where(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _director(cluster: Cluster, director: str) -> dict:
    host = cluster.hosts.get(director)
    if host is None or host["role"] != "director":
        raise ValueError(f"{director!r} is not a director of {cluster.doc.get('cluster')}")
    return host


def _table_services(cluster: Cluster, director: str):
    """(path, VIP address, raw service) for each service of DIRECTOR, every field checked."""
    _director(cluster, director)
    for vip_name, vip in cluster.doc["vips"].items():
        if vip["director"] != director:
            continue
        for index, raw in enumerate(vip["services"]):
            path = f"$.vips.{vip_name}.services[{index}]"
            _refuse_unknown(path, raw, SERVICE_FIELDS)
            _refuse_unknown(f"{path}.persistence", raw.get("persistence", {}), PERSISTENCE_FIELDS)
            _refuse_unknown(f"{path}.tunnel", raw.get("tunnel", {}), TUNNEL_FIELDS)
            for r, rs in enumerate(raw["real_servers"]):
                _refuse_unknown(f"{path}.real_servers[{r}]", rs, REAL_SERVER_FIELDS)
            yield path, _ip(vip["address"]), raw


def _service_name(raw: dict, vip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """How ipvsadm names a service: -t 192.0.2.1:80, --sctp-service [2001:db8::1]:3868, -f 7, -f 5 -6."""
    if "fwmark" in raw:
        return f"-f {raw['fwmark']}" + (" -6" if vip.version == 6 else "")
    if "port" not in raw:
        raise ValueError("expect.py cannot yet compute a service with neither port nor fwmark")
    return f"{PROTOCOL_FLAG[raw.get('protocol', DEFAULT_PROTOCOL)]} {_where(vip, raw['port'])}"


def _service_line(path: str, raw: dict, vip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The -A line, options in ipvsadm's order: -s, -p, -M, --pe, -o, -b."""
    protocol = raw.get("protocol", DEFAULT_PROTOCOL)
    scheduler = raw.get("scheduler", DEFAULT_SCHEDULER)
    line = f"-A {_service_name(raw, vip)} -s {scheduler}"
    persistence = raw.get("persistence")
    if persistence is not None:
        line += f" -p {persistence['timeout']}"
        # -M: the prefix that groups clients, printed only when it is not the whole address
        # (schema: 32 for IPv4, 128 for IPv6), as a netmask for IPv4 and a length for IPv6.
        granularity = persistence.get("granularity", vip.max_prefixlen)
        if granularity > vip.max_prefixlen:
            raise ValueError(f"expect.py cannot yet compute {path}: granularity {granularity} on an IPv{vip.version} VIP")
        if granularity != vip.max_prefixlen:
            if vip.version == 4:
                line += f" -M {ipaddress.IPv4Address((0xFFFFFFFF << (32 - granularity)) & 0xFFFFFFFF)}"
            else:
                line += f" -M {granularity}"
        if "engine" in persistence:
            if protocol != "udp":
                raise ValueError(f"expect.py cannot yet compute {path}: the {persistence['engine']} engine on {protocol}")
            line += f" --pe {persistence['engine']}"
    if raw.get("one_packet", DEFAULT_ONE_PACKET):
        if protocol != "udp":
            raise ValueError(f"expect.py cannot yet compute {path}: one-packet scheduling on {protocol}")
        line += " -o"
    flags = raw.get("scheduler_flags", [])
    if flags:
        wrong = [f for f in flags if f.split("-", 1)[0] != scheduler]
        if wrong:
            # ipvsadm prints a flag by its bit under the service's scheduler's name
            raise ValueError(f"expect.py cannot yet compute {path}: flags {wrong} on the {scheduler} scheduler")
        line += " -b " + ",".join(f"{scheduler}-{bit}" for bit in FLAG_BITS if f"{scheduler}-{bit}" in flags)
    return line


def _real_servers(cluster: Cluster, director: str, path: str, raw: dict, vip) -> list[tuple[str, str, dict]]:
    """(RIP:PORT as ipvsadm prints it, forwarding options, raw entry) for each real server."""
    forwarding = raw["forwarding"]
    out = []
    for r, rs in enumerate(raw["real_servers"]):
        where = f"{path}.real_servers[{r}]"
        if "host" in rs:
            host = cluster.hosts.get(rs["host"])
            if host is None:
                raise ValueError(f"expect.py cannot yet compute {where}: no host {rs['host']!r}")
            if host["role"] == "director":
                if rs["host"] != director or not rs.get("localnode", DEFAULT_LOCALNODE):
                    raise ValueError(f"expect.py cannot yet compute {where}: the director {rs['host']!r} as a real server")
                if forwarding != "dr":
                    # the kernel keeps the method given; seen in the VM only for DR
                    raise ValueError(f"expect.py cannot yet compute {where}: a localnode real server under {forwarding}")
            elif rs.get("localnode", DEFAULT_LOCALNODE):
                raise ValueError(f"expect.py cannot yet compute {where}: localnode on a real server")
            address = _ip(str(ipaddress.ip_interface(host["address"]).ip))
        else:
            if rs.get("localnode", DEFAULT_LOCALNODE):
                raise ValueError(f"expect.py cannot yet compute {where}: localnode on an address")
            address = _ip(rs["address"])
        if address.version != vip.version:
            raise ValueError(f"expect.py cannot yet compute {where}: an IPv{address.version} real server of an IPv{vip.version} VIP")
        if "fwmark" in raw:
            # Real servers of a mark show port 0 (each packet keeps its port); NAT's "port"
            # sends every marked port to that one.
            if "port" in rs and forwarding != "nat":
                raise ValueError(f"expect.py cannot yet compute {where}: a port under {forwarding}")
            port = rs.get("port", 0)
        elif forwarding == "nat":
            port = rs.get("port", raw["port"])
        else:
            if rs.get("port", raw["port"]) != raw["port"]:
                raise ValueError(f"expect.py cannot yet compute {where}: a port remapped under {forwarding}")
            port = raw["port"]
        options = f"{FORWARDING_FLAG[forwarding]} -w {rs.get('weight', DEFAULT_WEIGHT)}"
        tunnel = raw.get("tunnel")
        if tunnel is not None and forwarding != "tun":
            raise ValueError(f"expect.py cannot yet compute {path}: a tunnel under {forwarding}")
        if forwarding == "tun":
            tunnel = tunnel or {}
            kind = tunnel.get("type", DEFAULT_TUNNEL_TYPE)
            checksum = tunnel.get("checksum", DEFAULT_TUNNEL_CHECKSUM)
            options += f" --tun-type {kind}"
            if kind == "gue":
                if "port" not in tunnel:
                    raise ValueError(f"expect.py cannot yet compute {path}: a gue tunnel without its port")
                options += f" --tun-port {tunnel['port']}"
            elif "port" in tunnel:
                raise ValueError(f"expect.py cannot yet compute {path}: a port on a {kind} tunnel")
            if kind == "ipip":
                if "checksum" in tunnel:
                    raise ValueError(f"expect.py cannot yet compute {path}: a checksum on an ipip tunnel")
            else:
                # ipvsadm -S prints the checksum option of gue and gre tunnels, none too (seen in the VM)
                if kind == "gre" and checksum != "none":
                    raise ValueError(f"expect.py cannot yet compute {path}: a {checksum} checksum on a gre tunnel")
                options += f" {CHECKSUM_FLAG[checksum]}"
        out.append((_where(address, port), options, rs))
    return out


def expected_table(cluster: Cluster, director: str) -> list[str]:
    """The lines `ipvsadm -S -n` prints for DIRECTOR's table, in no particular order (compare
    them sorted: ipvsadm's order is its own)."""
    lines = []
    for path, vip, raw in _table_services(cluster, director):
        name = _service_name(raw, vip)
        lines.append(_service_line(path, raw, vip))
        for where, options, _ in _real_servers(cluster, director, path, raw, vip):
            lines.append(f"-a {name} -r {where} {options}")
    return lines


def expected_thresholds(cluster: Cluster, director: str) -> dict[str, tuple[int, int]]:
    """{"SERVICE -r RIP:PORT": (upper, lower)} for every real server of every service of
    DIRECTOR, SERVICE as ipvsadm names it ("-t 192.0.2.122:80", "-f 7", "-f 5 -6"); (0, 0) for
    one the file gives no threshold. An absent lower_threshold is 0: the kernel keeps 0 and
    uses three quarters of the upper one in its place."""
    out: dict[str, tuple[int, int]] = {}
    for path, vip, raw in _table_services(cluster, director):
        name = _service_name(raw, vip)
        for r, (where, _, rs) in enumerate(_real_servers(cluster, director, path, raw, vip)):
            upper, lower = rs.get("upper_threshold", 0), rs.get("lower_threshold", 0)
            if lower and (not upper or lower > upper):
                raise ValueError(f"expect.py cannot yet compute {path}.real_servers[{r}]: lower_threshold {lower} "
                                 f"with upper_threshold {upper}")
            out[f"{name} -r {where}"] = (upper, lower)
    return out


def parse_thresholds(listing: str) -> dict[str, tuple[int, int]]:
    """The same dict as expected_thresholds from what `ipvsadm -L -n --thresholds` prints:

        Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn
          -> RemoteAddress:Port
        TCP  192.0.2.122:80 rr
          -> 192.0.2.11:80                1          0          0          0
        FWM  5 IPv6 rr persistent 300
          -> [2001:db8::11]:0             0          0          0          0

    A line it cannot read is a ValueError, never skipped."""
    out: dict[str, tuple[int, int]] = {}
    service = None
    for number, line in enumerate(listing.splitlines(), 1):
        words = line.split()
        if not words or line.startswith("IP Virtual Server") or words[0] == "Prot" or words[1:2] == ["RemoteAddress:Port"]:
            continue
        if words[0] in PROTOCOL_LISTED and len(words) >= 2:
            service = f"{PROTOCOL_LISTED[words[0]]} {words[1]}"
        elif words[0] == "FWM" and len(words) >= 2 and words[1].isdigit():
            service = f"-f {words[1]}" + (" -6" if words[2:3] == ["IPv6"] else "")
        elif words[0] == "->" and len(words) >= 4 and service is not None and words[2].isdigit() and words[3].isdigit():
            key = f"{service} -r {words[1]}"
            if key in out:
                raise ValueError(f"line {number}: {key} listed twice")
            out[key] = (int(words[2]), int(words[3]))
        else:
            raise ValueError(f"line {number}: not a line of ipvsadm -L -n --thresholds: {line!r}")
    return out


def expected_timeouts(cluster: Cluster, director: str) -> tuple[int, int, int]:
    """(tcp, tcpfin, udp) after setup.sh on a fresh director: the host's ipvs_timeouts, and the
    kernel's value (KERNEL_TIMEOUTS) for each it leaves out."""
    given = _director(cluster, director).get("ipvs_timeouts", {})
    _refuse_unknown(f"$.hosts.{director}.ipvs_timeouts", given, frozenset({"tcp", "tcpfin", "udp"}))
    tcp, tcpfin, udp = KERNEL_TIMEOUTS
    return given.get("tcp", tcp), given.get("tcpfin", tcpfin), given.get("udp", udp)


def parse_timeouts(text: str) -> tuple[int, int, int]:
    """(tcp, tcpfin, udp) from `ipvsadm -L --timeout`: "Timeout (tcp tcpfin udp): 900 120 300"."""
    found = re.findall(r"^Timeout \(tcp tcpfin udp\): (\d+) (\d+) (\d+)\s*$", text, flags=re.MULTILINE)
    if len(found) != 1:
        raise ValueError(f"not the output of ipvsadm -L --timeout: {text!r}")
    tcp, tcpfin, udp = (int(x) for x in found[0])
    return tcp, tcpfin, udp


def table_problems(cluster: Cluster, tables: dict) -> list[str]:
    """Every difference between what each director shows and what the file says it must.
    TABLES: {director: {"saved": `ipvsadm -S -n`, "thresholds": `ipvsadm -L -n --thresholds`,
    "timeouts": `ipvsadm -L --timeout`}}, for every director of the cluster. [] when all is right."""
    problems = []
    for director in cluster.directors():
        shown = tables.get(director)
        if shown is None:
            problems.append(f"{director}: no table was recorded")
            continue
        for part in ("saved", "thresholds", "timeouts"):
            if part not in shown:
                problems.append(f"{director}: no {part!r} was recorded")
        if "saved" in shown:
            want = Counter(expected_table(cluster, director))
            have = Counter(line for line in shown["saved"].splitlines() if line.strip())
            problems += [f"{director}: ipvsadm -S -n lacks {line!r}" for line in sorted((want - have).elements())]
            problems += [f"{director}: ipvsadm -S -n has {line!r}, which the file does not describe"
                         for line in sorted((have - want).elements())]
        if "thresholds" in shown:
            want_t = expected_thresholds(cluster, director)
            try:
                have_t = parse_thresholds(shown["thresholds"])
            except ValueError as e:
                problems.append(f"{director}: cannot read ipvsadm -L -n --thresholds: {e}")
            else:
                for key in sorted(set(want_t) | set(have_t)):
                    if key not in have_t:
                        problems.append(f"{director}: ipvsadm -L -n --thresholds lacks {key}")
                    elif key not in want_t:
                        problems.append(f"{director}: ipvsadm -L -n --thresholds lists {key}, which the file does not describe")
                    elif have_t[key] != want_t[key]:
                        problems.append(f"{director}: {key}: thresholds (upper, lower) {have_t[key]}, expected {want_t[key]}")
        if "timeouts" in shown:
            want_o = expected_timeouts(cluster, director)
            try:
                have_o = parse_timeouts(shown["timeouts"])
            except ValueError as e:
                problems.append(f"{director}: cannot read ipvsadm -L --timeout: {e}")
            else:
                if have_o != want_o:
                    problems.append(f"{director}: timeouts (tcp tcpfin udp) {have_o}, expected {want_o}")
    problems += [f"{name}: a table was recorded for a host that is not a director" for name in sorted(set(tables) - set(cluster.directors()))]
    return problems
