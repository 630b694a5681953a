"""`lvsgen show`: what each director serves, read from the validated model.

The table (the default) has one section per director, and one row per real server of each of
its services. A VIP's name and a service's columns are printed on their first row only:

    director lb1: 192.0.2.2/24 on eth0
      VIP  SERVICE             SCHEDULER  PERSISTENCE  FORWARDING  REAL SERVER    HOST  WEIGHT
      www  tcp 192.0.2.100:80  wrr        -            dr          192.0.2.11:80  rs1        1

A firewall-mark service's SERVICE is its mark, then the packets that get it:
`fwmark 1 tcp 192.0.2.100:443,8000-8099`; its real servers show port 0 when each packet keeps
its own port.

SCHEDULER carries the scheduler flags and one-packet scheduling as `ipvsadm -L` shows them
(`sh (sh-fallback,sh-port)`, `rr ops`). PERSISTENCE is `-`, or the timeout in seconds and the
granularity as a prefix length (`300s /32`: one client address; `120s /24`: one /24 of
clients), then the persistence engine if there is one (`60s /32 sip`). HOST is `-` for a real
server lvsgen does not manage.

The JSON document (`--json`) has sorted keys and this shape; "format" changes only when a
key changes meaning or goes away:

    {"format": 1, "cluster": NAME, "source": FILE NAME,
     "directors": [{"name", "interface", "address": "192.0.2.2/24",
                    "vips": [{"name", "address",
                              "services": [{"protocol", "port", "fwmark": null | MARK,
                                            "ports": [PORT | "FIRST-LAST"...] (fwmark services;
                                            their "port" is 0),
                                            "scheduler", "forwarding",
                                            "scheduler_flags": [FLAG...], "one_packet",
                                            "persistence": null | {"timeout", "granularity",
                                                                   "engine": null | "sip"},
                                            "real_servers": [{"address", "port", "weight",
                                                              "host": NAME | null}]}]}]}]}

Directors are sorted by name, VIPs by name, services and real servers in ipvsadm's order
(the order of the rules file).
"""

from __future__ import annotations

import json
from typing import Any

from lvsgen.addresses import text
from lvsgen.artifacts.ipvsadm import addr_port
from lvsgen.marks import port_items, port_list
from lvsgen.model import Cluster, Host, Persistence, Service, Vip

FORMAT = 1
_HEAD = ("VIP", "SERVICE", "SCHEDULER", "PERSISTENCE", "FORWARDING", "REAL SERVER", "HOST", "WEIGHT")
_RIGHT = {"WEIGHT"}  # numbers are right-aligned


def _vips(cluster: Cluster, director: Host) -> list[Vip]:
    return [vip for vip in cluster.vips if vip.director == director.name]


def _persistence(value: Persistence | None) -> str:
    if value is None:
        return "-"
    return f"{value.timeout}s /{value.granularity}" + (f" {value.engine}" if value.engine else "")


def _scheduler(svc: Service) -> str:
    flags = f" ({','.join(svc.scheduler_flags)})" if svc.scheduler_flags else ""
    return svc.scheduler + flags + (" ops" if svc.one_packet else "")


def _rows(vip: Vip) -> list[tuple[str, ...]]:
    rows = []
    for number, svc in enumerate(vip.services):
        if svc.fwmark is not None:
            name = f"fwmark {svc.fwmark} {svc.protocol.value} {addr_port(svc.address, port_list(svc.ports, ','))}"
        else:
            name = f"{svc.protocol.value} {addr_port(svc.address, svc.port)}"
        service = (
            name,
            _scheduler(svc),
            _persistence(svc.persistence),
            svc.forwarding.value,
        )
        for index, rs in enumerate(svc.real_servers):
            first = (vip.name if number == 0 and index == 0 else "",) + (service if index == 0 else ("",) * len(service))
            rows.append(first + (addr_port(rs.address, rs.port), rs.host or "-", str(rs.weight)))
    return rows


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  " + "  ".join(
        cell.rjust(width) if head in _RIGHT else cell.ljust(width) for cell, width, head in zip(cells, widths, _HEAD)
    ).rstrip()


def table(cluster: Cluster) -> str:
    """The readable form: one aligned table, in one section per director."""
    directors = [host for host in cluster.hosts if host.is_director]
    sections = {d.name: [row for vip in _vips(cluster, d) for row in _rows(vip)] for d in directors}
    every = [_HEAD] + [row for rows in sections.values() for row in rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(_HEAD))]
    out = [f"cluster {cluster.name} (from {cluster.source})"]
    for director in directors:
        out += ["", f"director {director.name}: {director.address} on {director.interface}"]
        if sections[director.name]:
            out += [_line(_HEAD, widths)] + [_line(row, widths) for row in sections[director.name]]
        else:
            out.append("  no VIPs")
    return "\n".join(out) + "\n"


def _service(svc: Service) -> dict[str, Any]:
    persistence = svc.persistence
    return {
        "protocol": svc.protocol.value,
        "port": svc.port,
        "fwmark": svc.fwmark,
        "ports": port_items(svc.ports),
        "scheduler": svc.scheduler,
        "forwarding": svc.forwarding.value,
        "scheduler_flags": list(svc.scheduler_flags),
        "one_packet": svc.one_packet,
        "persistence": None
        if persistence is None
        else {"timeout": persistence.timeout, "granularity": persistence.granularity, "engine": persistence.engine},
        "real_servers": [
            {"address": text(rs.address), "port": rs.port, "weight": rs.weight, "host": rs.host} for rs in svc.real_servers
        ],
    }


def document(cluster: Cluster) -> dict[str, Any]:
    """The JSON form, as Python data (the shape is in this module's docstring)."""
    return {
        "format": FORMAT,
        "cluster": cluster.name,
        "source": cluster.source,
        "directors": [
            {
                "name": host.name,
                "interface": host.interface,
                "address": str(host.address),
                "vips": [
                    {"name": vip.name, "address": text(vip.address), "services": [_service(svc) for svc in vip.services]}
                    for vip in _vips(cluster, host)
                ],
            }
            for host in cluster.hosts
            if host.is_director
        ],
    }


def json_text(cluster: Cluster) -> str:
    return json.dumps(document(cluster), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
