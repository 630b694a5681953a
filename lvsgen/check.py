"""`lvsgen build --check`: is the output tree exactly what the cluster file gives? Writes nothing.

It lists the changes a build would make, as the writer computes them (`writer.changes`, the
one comparison that `writer.write` applies), one per line, sorted by path:

    changed  out/lb1/setup.sh      other bytes (the mode may differ too)
    mode     out/rs1/setup.sh      the same bytes, another mode
    added    out/rs5/setup.sh      a file the build writes that is not there
    removed  out/rs4/setup.sh      a file lvsgen wrote earlier that the build removes

Each host folder's `.lvsgen-manifest` is compared like any other file. Only files lvsgen
owns are looked at: those it generates, those named in a host folder's manifest, and the
temporary names a killed build left there. Anything else under the output folder is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from lvsgen import writer
from lvsgen.files import File

_WIDTH = max(len(kind.value) for kind in writer.Kind)


def differences(out: Path, plan: Mapping[str, list[File]]) -> list[str]:
    """One line per file a build of plan into out would change; empty if out is up to date.
    Raises OutputError for a tree the build refuses to write, with the build's message."""
    todo = writer.changes(out, plan)
    found = [(change.target, change.kind) for change in todo.files]
    found += [(leftover, writer.Kind.REMOVED) for leftover in todo.leftovers]
    return [f"{kind.value:<{_WIDTH}}  {target}" for target, kind in sorted(found, key=lambda e: (str(e[0]), e[1].value))]
