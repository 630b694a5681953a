"""The sysctl.d drop-in (etc/sysctl.d/99-zz-lvsgen.conf): every sysctl of the host's state,
each with its reason."""

from __future__ import annotations

from lvsgen.files import SYSCTL, File
from lvsgen.render import render
from lvsgen.state import HostState


def files(state: HostState, head: str) -> list[File]:
    if not state.sysctls:
        return []
    return [File(SYSCTL, render("sysctl.conf.j2", header=head, sysctls=state.sysctls))]
