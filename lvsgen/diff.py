"""``lvsgen diff``: what setup.sh would change in a director's IPVS table.

The delta is never computed here. It comes from the host engine's own plan,
``lvs_ipvs_plan`` in the engine every host gets (lvsgen.engine), run under bash exactly as
setup.sh runs it: the rules file this build gives the director against the saved live table,
with the director's ``owns_ipvs_table`` and its drain setting. Python only reads its tagged
lines (A: add or edit, W: wait for a drain, R: delete) and lays them out as a table, then shows
the two tables as a unified diff, both in ipvsadm's order. So the diff cannot disagree with
what setup.sh does.

There is no record of the services lvsgen added on the director (/var/lib/lvsgen/ipvs-services)
here: with ``owns_ipvs_table: false`` a service the file does not describe is shown as kept,
though setup.sh would remove it if lvsgen had once added it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lvsgen import engine, files, pipeline, plan, saved
from lvsgen.model import Cluster, Host, Protocol
from lvsgen.order import sort_dests, sort_services

# The host engine's plan, called as setup.sh calls it (lvs_ipvs_diff): DESIRED LIVE RECORDED
# OWNED DRAIN, in 'ipvsadm -S -n' form. The engine only defines functions when sourced; it is
# written next to the two tables, byte for byte the file every host gets.
_RUN_PLAN = 'source "$LVSGEN_LIBRARY" || exit 99\nlvs_ipvs_plan "$1" "$2" /dev/null "$3" "$4" save\n'
_ENGINE_ERROR = re.compile(r"^lvsgen: (desired|live) line (\d+): cannot read: (.*)$")
_PROTOCOLS = {p.flag: p for p in Protocol}


class DiffFailed(Exception):
    """Something the user gave cannot be compared; each message is one line for stderr."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Row:
    action: str  # add, change, drain, remove, keep
    service: str
    server: str  # the real server, or what the row says about the service's real servers
    detail: str


@dataclass(frozen=True)
class Result:
    host: str
    rows: list[Row]  # in the plan's order, then the kept services
    changes: int  # rows that change the table (all but keep)
    unified: list[str]  # the unified diff, live → desired, without a final newline per line
    header: str

    def text(self) -> str:
        out = [self.header]
        if self.rows:
            out.append("")
            out.extend(_table(self.rows))
        if self.unified:
            out.append("")
            out.extend(self.unified)
        return "".join(f"{line}\n" for line in out)


def director(cluster: Cluster, name: str, source: str) -> Host:
    directors = [h.name for h in cluster.hosts if h.is_director]
    listed = ", ".join(directors)
    for host in cluster.hosts:
        if host.name == name:
            if not host.is_director:
                raise DiffFailed([f"lvsgen: diff: {source}: host {json.dumps(name)} is a real server; only directors have an IPVS table: name one of {listed}"])
            return host
    raise DiffFailed([f"lvsgen: diff: {source}: no host {json.dumps(name)}; name one of its directors: {listed}"])


def desired_rules(cluster: Cluster, host: Host) -> str:
    """The director's rules file, as `lvsgen build` writes it."""
    for file in plan.host_files(cluster, host, {}):
        if file.path == files.RULES:
            return file.text
    raise AssertionError(f"the plan gives director {host.name} no {files.RULES}")


def read_live(live: str) -> tuple[str, str]:
    """(text, name for messages) of the saved table: a file, or standard input for '-'."""
    name = "<stdin>" if live == "-" else live
    try:
        data = sys.stdin.buffer.read() if live == "-" else Path(live).read_bytes()
    except FileNotFoundError:
        raise DiffFailed([f"lvsgen: diff: {name}: no such file; give the file 'ipvsadm -S -n' wrote on the director, or - for standard input"]) from None
    except OSError as err:
        raise DiffFailed([f"lvsgen: diff: {name}: cannot read it: {err.strerror or err}"]) from None
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as err:
        raise DiffFailed([f"lvsgen: diff: {name}: not text (byte {err.start + 1} is not UTF-8): give the file 'ipvsadm -S -n' wrote"]) from None


def run_plan(desired: str, live: str, owned: bool, drain: bool) -> list[str]:
    """The host engine's plan lines (A/W/R) for DESIRED against LIVE, both 'ipvsadm -S -n' text."""
    missing = [tool for tool in ("bash", "awk") if shutil.which(tool) is None]
    if missing:
        raise DiffFailed([f"lvsgen: diff needs {' and '.join(missing)}: it runs the host engine's own plan (lvsgen.sh, bash and awk), the code setup.sh runs; install {' and '.join(missing)}"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LVS_", "LVSGEN_"))}
    env["LC_ALL"] = "C"
    with tempfile.TemporaryDirectory(prefix="lvsgen-diff-") as tmp:
        desired_path, live_path = Path(tmp) / "desired", Path(tmp) / "live"
        library = Path(tmp) / files.LIBRARY
        library.write_text(engine.text(), encoding="utf-8")
        env["LVSGEN_LIBRARY"] = str(library)
        desired_path.write_text(desired, encoding="utf-8")
        live_path.write_text(live, encoding="utf-8")
        try:
            run = subprocess.run(
                ["bash", "-c", _RUN_PLAN, "lvsgen-diff", str(desired_path), str(live_path), str(int(owned)), str(int(drain))],
                env=env,
                capture_output=True,
                text=True,
            )
        except OSError as err:
            raise DiffFailed([f"lvsgen: diff: cannot run bash: {err}"]) from None
    if run.returncode != 0 or run.stderr:
        raise _engine_failure(run)
    return run.stdout.splitlines()


def _engine_failure(run: subprocess.CompletedProcess[str]) -> Exception:
    said = run.stderr.strip()
    match = _ENGINE_ERROR.match(said.splitlines()[0]) if said else None
    if match:
        # saved.read accepts only what the plan reads, so this is a bug in lvsgen, not input.
        return AssertionError(f"the host engine cannot read {match.group(1)} line {match.group(2)} that lvsgen passed it: {match.group(3)}")
    return DiffFailed([f"lvsgen: diff: the host engine's plan failed (exit status {run.returncode}): {said or 'no message'}"])


def compare(cluster_path: Path, host_name: str, live: str) -> Result:
    """Load the cluster, build the director's rules and compare them with the saved table."""
    cluster = pipeline.load(cluster_path)
    host = director(cluster, host_name, str(cluster_path))
    desired = desired_rules(cluster, host)
    text, live_name = read_live(live)
    try:
        live_table = saved.read(text, live_name)
    except saved.SavedError as err:
        raise DiffFailed(err.messages) from None
    desired_table = saved.read(desired, f"{host.name}: {files.RULES}")
    drain = host.drain_timeout > 0
    lines = run_plan(desired, live_table.text(), host.owns_ipvs_table, drain)
    rows = _rows(lines, live_table, desired_table, host)
    changes = sum(1 for row in rows if row.action != "keep")
    kept = {row.service for row in rows if row.action == "keep"}
    unified = _unified(live_table, desired_table, kept, live_name, f"{cluster_path}: {host.name}/{files.RULES}")
    where = f"{host.name} ({cluster_path}) against {live_name}"
    if changes:
        header = f"{where}: {changes} change{'s' if changes != 1 else ''} to the IPVS table"
    else:
        header = f"{where}: no changes: the live table is what the cluster file describes"
    return Result(host.name, rows, changes, unified, header)


# --- the plan as a table ---------------------------------------------------------------------
def _split(line: str) -> saved.Command:
    return saved.split_command(line.split(" "))


def _rows(lines: list[str], live: saved.Table, desired: saved.Table, host: Host) -> list[Row]:
    live_services = live.by_name()
    live_servers = {(svc.name, s.command.server): s.command for svc in live.services for s in svc.servers}
    drained: dict[str, list[str]] = {}  # service -> its real servers the plan waits for
    for line in lines:
        if line.startswith("W "):
            service, server = line[2:].rsplit(" ", 1)
            drained.setdefault(service, []).append(server)
    wait = f"up to {host.drain_timeout} s"
    rows: list[Row] = []
    removed: set[str] = set()
    for line in lines:
        tag, _, rest = line.partition(" ")
        if tag == "W":
            continue
        cmd = _split(rest)
        name, server = cmd.service, cmd.server or ""
        if cmd.command == "-A":
            rows.append(Row("add", name, "", cmd.option_text))
        elif cmd.command == "-E":
            rows.append(Row("change", name, "", f"{live_services[name].line.command.option_text} → {cmd.option_text}"))
        elif cmd.command == "-a":
            rows.append(Row("add", name, server, cmd.option_text))
        elif cmd.command == "-e":
            if server in drained.get(name, []):
                continue  # weight 0, the first step of a drain: the drain row below says it
            rows.append(Row("change", name, server, f"{live_servers[(name, server)].option_text} → {cmd.option_text}"))
        elif cmd.command == "-d":
            old = live_servers[(name, server)].option_text
            if server in drained.get(name, []):
                rows.append(Row("drain", name, server, f"{old} → weight 0, wait for its connections to end ({wait}), then delete"))
            else:
                rows.append(Row("remove", name, server, old))
        elif cmd.command == "-D":
            removed.add(name)
            svc = live_services[name]
            count = len(svc.servers)
            servers = f"({count} real server{'s' if count != 1 else ''})"
            if drained.get(name):
                rows.append(Row("drain", name, servers, f"{svc.line.command.option_text}: real servers → weight 0, wait for their connections to end ({wait}), then delete the service"))
            else:
                rows.append(Row("remove", name, servers, f"{svc.line.command.option_text}: not in the cluster file, and the table is lvsgen's (owns_ipvs_table: true)"))
        else:
            raise AssertionError(f"unexpected plan line from the host engine: {line!r}")
    described = desired.by_name()
    for svc in live.services:
        if svc.name not in described and svc.name not in removed:
            count = len(svc.servers)
            rows.append(
                Row(
                    "keep",
                    svc.name,
                    f"({count} real server{'s' if count != 1 else ''})",
                    f"{svc.line.command.option_text}: not in the cluster file; owns_ipvs_table is false, so setup.sh leaves it alone unless lvsgen added it",
                )
            )
    return rows


def _table(rows: list[Row]) -> list[str]:
    head = Row("action", "service", "real server", "live → desired")
    widths = [max(len(getattr(r, f)) for r in [head, *rows]) for f in ("action", "service", "server")]
    out = []
    for row in [head, *rows]:
        cells = [row.action.ljust(widths[0]), row.service.ljust(widths[1]), row.server.ljust(widths[2]), row.detail]
        out.append(("  " + "  ".join(cells)).rstrip())
    return out


# --- the unified diff, both sides in ipvsadm's order ------------------------------------------
def _service_key(name: str) -> Any:
    words = name.split(" ")
    if words[0] == saved.FWMARK:
        return None
    address, port = saved.parse_address_port(words[1])
    return SimpleNamespace(name=name, address=address, port=port, protocol=_PROTOCOLS[words[0]])


def _ranks(names: list[str]) -> dict[str, int]:
    """ipvsadm's listing order for these service names (ipvs_cmp_services): firewall-mark
    services last, by mark and family; the others as lvsgen.order sorts them. One order for
    both sides, so that a service sits at the same place in each."""
    keys = [k for k in (_service_key(n) for n in names) if k is not None]
    ordered = [k.name for k in sort_services(keys)]
    marks = sorted((n for n in names if n.startswith(saved.FWMARK + " ")), key=lambda n: (int(n.split(" ")[1]), n.endswith(" -6")))
    return {name: i for i, name in enumerate(ordered + marks)}


def _lines(table: saved.Table, ranks: dict[str, int], skip: set[str]) -> list[str]:
    out = []
    for svc in sorted((s for s in table.services if s.name not in skip), key=lambda s: ranks[s.name]):
        out.append(svc.line.command.text)
        dests = [SimpleNamespace(line=line, address=a, port=p) for line in svc.servers for a, p in [saved.parse_address_port(line.command.server or "")]]
        out.extend(d.line.command.text for d in sort_dests(dests))
    return out


def _unified(live: saved.Table, desired: saved.Table, kept: set[str], live_name: str, desired_name: str) -> list[str]:
    names = list(dict.fromkeys([s.name for s in desired.services] + [s.name for s in live.services]))
    ranks = _ranks(names)
    old = _lines(live, ranks, kept)
    new = _lines(desired, ranks, set())
    label = f"{live_name} (live)"
    if kept:
        label = f"{live_name} (live, without the {len(kept)} kept service{'s' if len(kept) != 1 else ''})"
    return list(difflib.unified_diff(old, new, label, desired_name, lineterm=""))
