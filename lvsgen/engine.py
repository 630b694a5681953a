"""The host engine, lvsgen.sh: one bash file, assembled from its parts in templates/host/.

Every host gets the same engine, byte for byte: its setup.sh sources it, the boot copy
(/var/lib/lvsgen/host) holds it, and `lvsgen diff` runs its plan. A host folder copied by hand
or written by cloud-init keeps it as one self-contained file. The source is in parts, one per
concern, assembled here in the order PARTS gives:

- the fixed HEADER first;
- a bash part (.sh) as it is, except its first line: that line is the part's
  `# shellcheck shell=bash` directive, there so that shellcheck can check the part on its own
  (tests/test_engine.py). It becomes a line that names the part;
- an awk program (.awk) as one bash variable named after its file (ipvs-plan.awk:
  LVS_AWK_IPVS_PLAN), in single quotes, so no process is started to load it. A single
  quote in an awk file is refused: a single-quoted bash string cannot hold one (in awk, write
  it as "\\047"; in a comment, reword).

The assembler refuses a part it cannot find, and a file in templates/host/ that PARTS does not
list, so a part cannot be left out without an error.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lvsgen.resources import templates_dir

FOLDER = "host"  # under templates/

HEADER = """\
# lvsgen host engine, assembled by lvsgen from templates/host/ (lvsgen/engine.py): do not edit.
# Change the parts there and build again. Each part starts at a line '# --- templates/host/NAME'.
# shellcheck shell=bash disable=SC2153 # the LVS_* data comes from setup.sh, which sources this
"""

# The parts, in the order they are assembled: each uses only those before it, and an awk
# program comes just before the part that runs it.
PARTS: tuple[str, ...] = (
    "common.sh",
    "record.sh",
    "net.sh",
    "preflight.sh",
    "kernel.sh",
    "files.sh",
    "nft-union.awk",
    "nft.sh",
    "sync.sh",
    "ipvs-proc.awk",
    "ipvs-proc-print.awk",
    "ipvs-plan.awk",
    "ipvs.sh",
    "thresholds.awk",
    "thresholds.sh",
    "remove.sh",
    "main.sh",
)

_DIRECTIVE = "# shellcheck shell=bash"


class EngineError(RuntimeError):
    """templates/host/ cannot be assembled: a bug in lvsgen, not in the user's input."""


def awk_variable(name: str) -> str:
    """The bash variable an awk file becomes: ipvs-plan.awk -> LVS_AWK_IPVS_PLAN."""
    return "LVS_AWK_" + name.removesuffix(".awk").upper().replace("-", "_")


def _separator(name: str, what: str = "") -> str:
    line = f"# --- templates/host/{name}{what} "
    return line + "-" * max(3, 100 - len(line))


def _part(folder: Path, name: str) -> str:
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise EngineError(f"{path}: cannot read this part of the host engine: {err.strerror or err}") from None
    if not text.endswith("\n"):
        raise EngineError(f"{path}: the last line has no newline")
    if name.endswith(".awk"):
        for number, line in enumerate(text.splitlines(), 1):
            if "'" in line:
                raise EngineError(
                    f"{path}:{number}: a single quote: the engine holds each awk program in a single-quoted "
                    "bash string, which cannot contain one; in awk code write \\047, in a comment reword it"
                )
        variable = awk_variable(name)
        return (
            f"{_separator(name, f' (as {variable})')}\n"
            "# shellcheck disable=SC2016 # awk code: $ is awk's\n"
            f"{variable}='\n{text}'\n"
        )
    first, _, rest = text.partition("\n")
    if not first.startswith(_DIRECTIVE):
        raise EngineError(f"{path}:1: a part must start with '{_DIRECTIVE}' (which the assembled engine does not repeat)")
    return f"{_separator(name)}\n{rest}"


def assemble(folder: Path) -> str:
    """The engine from the parts in folder, in the order of PARTS."""
    listed = set(PARTS)
    present = {p.name for p in folder.iterdir() if p.suffix in (".sh", ".awk")} if folder.is_dir() else set()
    unlisted = sorted(present - listed)
    if unlisted:
        raise EngineError(f"{folder}: {', '.join(unlisted)}: not in lvsgen.engine.PARTS; list each part of the host engine there, in its place")
    return HEADER + "\n" + "\n".join(_part(folder, name) for name in PARTS)


@lru_cache(maxsize=1)
def text() -> str:
    """The engine every host gets, assembled once per process."""
    return assemble(templates_dir() / FOLDER)
