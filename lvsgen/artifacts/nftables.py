"""A director's nftables table inet lvsgen as a file (etc/lvsgen/lvsgen.nft), which setup.sh
loads with 'nft -f': a NAT director's forwarding policy (lvsgen.forward) and the firewall
marks of its firewall-mark services (lvsgen.marks)."""

from __future__ import annotations

from lvsgen.files import NFTABLES, File
from lvsgen.forward import TABLE
from lvsgen.render import render
from lvsgen.state import HostState


def files(state: HostState, head: str) -> list[File]:
    if not state.has_nft_table:
        return []
    text = render("lvsgen.nft.j2", header=head, host=state.host.name, table=TABLE, policy=state.forward, marks=state.marks)
    return [File(NFTABLES, text)]
