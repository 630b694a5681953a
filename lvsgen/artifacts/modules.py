"""The modules-load.d file (etc/modules-load.d/lvsgen.conf): the kernel modules the host's
state needs, loaded early at boot; and the modprobe.d file (etc/modprobe.d/lvsgen.conf): the
parameters they are loaded with (ip_vs conn_tab_bits)."""

from __future__ import annotations

from lvsgen.files import MODPROBE, MODULES, File
from lvsgen.render import render
from lvsgen.state import HostState


def files(state: HostState, head: str) -> list[File]:
    out: list[File] = []
    if state.modules:
        out.append(File(MODULES, render("modules.conf.j2", header=head, modules=state.modules)))
    if state.host.conn_tab_bits is not None:
        bits = state.host.conn_tab_bits
        out.append(File(MODPROBE, render("modprobe.conf.j2", header=head, bits=bits, buckets=f"{2**bits:,}")))
    return out
