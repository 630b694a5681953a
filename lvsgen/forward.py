"""A NAT director's forwarding policy, as an nftables table of lvsgen's own (inet lvsgen).

LVS-NAT needs host-wide IP forwarding: the real servers' replies are routed back through the
director, and IPVS rewrites their source to the VIP in the forward hook. Forwarding alone
would make the director a router between all of its networks. The table's forward chain
drops everything except those replies, matched by (protocol, real-server address, real-server
port), and ICMP errors from the real servers (path MTU, unreachable), which IPVS also
relays. The client's requests do not cross the forward hook: IPVS takes them in the input
hook and sends them out from the host itself.

The chain runs at the filter priority (0), before IPVS's own forward hook (priority 99), so
it sees the reply as the real server sent it. A drop in any base chain is final, so other
tables (the host's firewall) cannot let through what this one drops; an accept here still
passes through theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lvsgen.addresses import text
from lvsgen.model import Forwarding, IPAddress, Service

TABLE = "lvsgen"  # nft family inet


@dataclass(frozen=True)
class ForwardPolicy:
    replies4: tuple[str, ...]  # "tcp . 198.51.100.11 . 80"
    replies6: tuple[str, ...]
    sources4: tuple[str, ...]  # real-server addresses, for their ICMP errors
    sources6: tuple[str, ...]
    interval: bool = False  # a reply port is a range (a firewall-mark service's): the sets need "flags interval"


def forward_policy(services: Sequence[Service]) -> ForwardPolicy | None:
    """The replies a director's NAT services let through; None without NAT services."""
    replies: set[tuple[int, IPAddress, str, int, int]] = set()
    for svc in services:
        if svc.forwarding is not Forwarding.NAT:
            continue
        for rs in svc.real_servers:
            # A firewall-mark service's real server without a port of its own answers from
            # the port each packet was sent to: any of the service's ports.
            spans = svc.ports if svc.fwmark is not None and rs.port == 0 else ((rs.port, rs.port),)
            for first, last in spans:
                replies.add((rs.address.version, rs.address, svc.protocol.value, first, last))
    if not replies:
        return None
    ordered = sorted(replies, key=lambda r: (r[0], int(r[1]), r[2], r[3], r[4]))

    def elements(version: int) -> tuple[str, ...]:
        return tuple(
            f"{proto} . {text(addr)} . {first if first == last else f'{first}-{last}'}"
            for v, addr, proto, first, last in ordered
            if v == version
        )

    def sources(version: int) -> tuple[str, ...]:
        return tuple(dict.fromkeys(text(addr) for v, addr, *_ in ordered if v == version))

    return ForwardPolicy(elements(4), elements(6), sources(4), sources(6), any(r[3] != r[4] for r in ordered))
