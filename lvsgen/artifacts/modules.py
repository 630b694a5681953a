"""The modules-load.d file (etc/modules-load.d/lvsgen.conf): the kernel modules the host's
state needs, loaded early at boot."""

from __future__ import annotations

from lvsgen.files import MODULES, File
from lvsgen.render import render
from lvsgen.state import HostState


def files(state: HostState, head: str) -> list[File]:
    if not state.modules:
        return []
    return [File(MODULES, render("modules.conf.j2", header=head, modules=state.modules))]
