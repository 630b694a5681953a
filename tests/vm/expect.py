"""What a cluster file says must happen in the VM, read from the raw JSON document.

Nothing here imports lvsgen: if lvsgen misread the file (dropped a real server, flattened a
weight, lost a VIP), its artifacts would be wrong and these expectations would still be
right, so the VM checks fail. The only knowledge taken from outside the document is what
the user reads too: the defaults the JSON Schema declares, and the documented placement of
DR VIPs (a director's IPv4 VIPs on its dummy device `lvs0`, its IPv6 VIPs on its interface; a
real server's on `lvs0`, or `lo`).

Only what the VM examples use is covered (DR, NAT and TUN services on an address); anything else
is refused, so that a new example cannot be half-checked by accident.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "cluster.schema.json").read_text())


def _default(definition: str, prop: str):
    return SCHEMA["$defs"][definition]["properties"][prop]["default"]


DEFAULT_PROTOCOL = _default("service", "protocol")
DEFAULT_SCHEDULER = _default("service", "scheduler")
DEFAULT_WEIGHT = _default("real_server", "weight")
DEFAULT_VIP_DEVICE = _default("host", "vip_device")
DUMMY = "lvs0"  # README: "dummy (default: the device lvs0)"
TUNNEL = "tunl0"


class Cluster:
    """The document, with the schema's defaults filled in, as plain dicts and lists."""

    def __init__(self, path: Path):
        self.doc = json.loads(Path(path).read_text())
        self.hosts: dict[str, dict] = self.doc["hosts"]
        self.vips: list[dict] = []
        self.services: list[dict] = []
        for vip_name, vip in self.doc["vips"].items():
            address = str(ipaddress.ip_address(vip["address"]))
            self.vips.append({"name": vip_name, "address": address, "director": vip["director"]})
            for raw in vip["services"]:
                if raw.get("forwarding") not in ("dr", "nat", "tun"):
                    raise ValueError(f"expect.py covers DR, NAT and TUN services only: {vip_name} {raw}")
                # A firewall-mark service is one entry per port it marks (the first of a range),
                # each with the mark: every port answers as the service does.
                ports = [p if isinstance(p, int) else int(p.split("-")[0]) for p in raw["ports"]] if "fwmark" in raw else [raw["port"]]
                for port in ports:
                    self._service(vip_name, address, vip, {**raw, "port": port})

    def _service(self, vip_name: str, address: str, vip: dict, svc: dict) -> None:
        protocol = svc.get("protocol", DEFAULT_PROTOCOL)
        members = {}
        ports = {}
        unmanaged = []
        for rs in svc["real_servers"]:
            weight = rs.get("weight", DEFAULT_WEIGHT)
            if "host" in rs:
                members[rs["host"]] = weight
                # the port the real server listens on: NAT may remap it
                ports[rs["host"]] = rs.get("port", svc["port"]) if svc["forwarding"] == "nat" else svc["port"]
            else:
                unmanaged.append((rs["address"], weight))
        self.services.append({
            "key": f"{protocol} {address}:{svc['port']}",
            "ipvs_key": (f"FWM {svc['fwmark']}" + (" IPv6" if ":" in address else "")) if "fwmark" in svc
            else f"{protocol.upper()} {address if ':' not in address else '[' + address + ']'}:{svc['port']}",
            "protocol": protocol,
            "vip": address,
            "port": svc["port"],
            "director": vip["director"],
            "forwarding": svc["forwarding"],
            "ports": ports,
            "scheduler": svc.get("scheduler", DEFAULT_SCHEDULER),
            "persistent": "persistence" in svc,
            "tunnel": svc.get("tunnel", {}).get("type", "ipip") if svc["forwarding"] == "tun" else None,
            "fwmark": svc.get("fwmark"),
            "weights": members,  # managed real server -> weight, as written
            "unmanaged": unmanaged,
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


def expected_answers(svc: dict) -> tuple[int, dict[str, int] | None, str]:
    """(requests to send, exact split or None, rule) for one service."""
    active = {host: w for host, w in svc["weights"].items() if w > 0}
    assert all(w == 0 for _, w in svc["unmanaged"]), "a test cluster's unmanaged real servers must have weight 0"
    if svc["persistent"]:
        return 4, None, "persistent: one real server for every request"
    if svc["scheduler"] == "rr":
        return 2 * len(active), {host: 2 for host in active}, "rr: 2 each"
    if svc["scheduler"] == "wrr":
        return 2 * sum(active.values()), {host: 2 * w for host, w in active.items()}, "wrr: 2 x weight each"
    return 3 * len(active), None, "every real server at least once"


def check_answers(cluster: Cluster, answers: dict) -> list[str]:
    """Every problem with the answers the client got, service by service."""
    problems = []
    for svc in cluster.services:
        got = answers.get(svc["key"], [])
        n, split, rule = expected_answers(svc)
        counts = {name: got.count(name) for name in set(got)}
        members = {host for host, w in svc["weights"].items() if w > 0}
        if len(got) != n or set(counts) - members:
            problems.append(f"{svc['key']}: {got} (expected {n} answers from {sorted(members)})")
        elif split is not None and counts != split:
            problems.append(f"{svc['key']}: {counts}, expected {split} ({rule})")
        elif svc["persistent"] and len(counts) != 1:
            problems.append(f"{svc['key']}: {counts}, expected one real server ({rule})")
        elif split is None and not svc["persistent"] and set(counts) != members:
            problems.append(f"{svc['key']}: {counts}, expected every one of {sorted(members)} ({rule})")
    return problems
