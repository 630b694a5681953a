"""A director's firewall marks: which packets to a VIP carry the mark of a firewall-mark service.

IPVS looks a packet up by its mark first (``ip_vs_service_find``), then by protocol, address and
port. A firewall-mark service (``ipvsadm -f MARK``) is therefore one table entry, with one
scheduler and one persistence, for every port the director marks: a persistent client keeps
its real server across all of them (HTTP and HTTPS, or an FTP control port and its passive
range).

The marks are set in the nftables table inet lvsgen, chain ``marks``, at the prerouting hook
with the mangle priority: after connection tracking and before routing, and well before IPVS,
which takes packets at the local-in hook. The rule sets the whole 32-bit mark, as IPVS compares
all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lvsgen.addresses import text
from lvsgen.model import Service


@dataclass(frozen=True)
class MarkRule:
    family: str  # nft's address match: "ip" or "ip6"
    vip: str
    protocol: str  # tcp, udp or sctp
    ports: str  # "80, 443, 8000-8099"
    mark: int


def port_items(ranges: Sequence[tuple[int, int]]) -> list[int | str]:
    """The ranges as a cluster file writes them: 80, "8000-8099"."""
    return [first if first == last else f"{first}-{last}" for first, last in ranges]


def port_list(ranges: Sequence[tuple[int, int]], sep: str = ", ") -> str:
    return sep.join(map(str, port_items(ranges)))


def mark_rules(services: Sequence[Service]) -> tuple[MarkRule, ...]:
    """One rule per firewall-mark service, IPv4 first, then by mark."""
    rules = [
        MarkRule("ip" if svc.address.version == 4 else "ip6", text(svc.address), svc.protocol.value, port_list(svc.ports), svc.fwmark)
        for svc in services
        if svc.fwmark is not None
    ]
    return tuple(sorted(rules, key=lambda r: (r.family, r.mark)))
