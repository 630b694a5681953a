"""A NAT director's forwarding policy as an nftables file (etc/lvsgen/forward.nft), which
setup.sh loads as table inet lvsgen. What the policy lets through is lvsgen.forward's."""

from __future__ import annotations

from lvsgen.files import FORWARD, File
from lvsgen.forward import TABLE
from lvsgen.render import render
from lvsgen.state import HostState


def files(state: HostState, head: str) -> list[File]:
    if state.forward is None:
        return []
    text = render("forward.nft.j2", header=head, host=state.host.name, table=TABLE, policy=state.forward)
    return [File(FORWARD, text)]
