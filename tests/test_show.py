"""`lvsgen show`: goldens for the table and the JSON of every case, the JSON checked against
the raw cluster file (not against lvsgen's model), and invalid input reported as build does."""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cases import REGEN, SHOW, ROOT, case_input, error_cases, golden_cases, lvsgen

SCHEMA = json.loads((ROOT / "schemas/cluster.schema.json").read_text())


@pytest.mark.parametrize("name", sorted(SHOW))
@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_show_golden(case: Path, name: str) -> None:
    run = lvsgen("show", str(case_input(case)), *SHOW[name])
    assert (run.returncode, run.stderr) == (0, ""), run.stderr
    want = (case / "show" / name).read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(want.splitlines(True), run.stdout.splitlines(True), f"show/{name}", f"lvsgen show {' '.join(SHOW[name])}")
    )
    assert not diff, f"{diff}\nIf the change is intended, regenerate with: {REGEN}\nand read the diff before committing it."


def _default(definition: str, prop: str) -> Any:
    return SCHEMA["$defs"][definition]["properties"][prop]["default"]


def _ports(items: list[Any]) -> tuple[int, ...]:
    """Every port a fwmark service's "ports" covers (show may merge neighbours into a range)."""
    out: set[int] = set()
    for item in items:
        first, last = (item, item) if isinstance(item, int) else map(int, item.split("-"))
        out.update(range(first, last + 1))
    return tuple(sorted(out))


def _from_input(document: dict[str, Any]) -> dict[str, Any]:
    """What show must say, read straight from the cluster file and the schema's defaults:
    director -> VIP -> [(service, Counter of real servers)]."""
    hosts = document["hosts"]
    want: dict[str, Any] = {name: {} for name, host in hosts.items() if host["role"] == "director"}
    for vip_name, vip in document["vips"].items():
        services = []
        for svc in vip["services"]:
            persistence = svc.get("persistence")
            if persistence is not None:
                full = ipaddress.ip_address(vip["address"]).max_prefixlen
                persistence = {
                    "timeout": persistence["timeout"],
                    "granularity": persistence.get("granularity", full),
                    "engine": persistence.get("engine"),
                }
            key = (
                svc.get("protocol", _default("service", "protocol")),
                svc.get("port", 0),
                svc.get("fwmark"),
                _ports(svc.get("ports", [])),
                svc.get("scheduler", _default("service", "scheduler")),
                svc["forwarding"],
                json.dumps(persistence, sort_keys=True),
                tuple(sorted(svc.get("scheduler_flags", []))),
                svc.get("one_packet", False),
            )
            members = Counter(
                (
                    str(ipaddress.ip_interface(hosts[rs["host"]]["address"]).ip) if "host" in rs else rs["address"],
                    rs.get("port", svc.get("port", 0)) if svc["forwarding"] == "nat" else svc.get("port", 0),
                    rs.get("weight", _default("real_server", "weight")),
                    rs.get("host"),
                )
                for rs in svc["real_servers"]
            )
            services.append((key, members))
        want[vip["director"]][vip_name] = (str(ipaddress.ip_address(vip["address"])), sorted(services, key=repr))
    return want


def _from_show(shown: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for director in shown["directors"]:
        got[director["name"]] = {}
        for vip in director["vips"]:
            services = []
            for svc in vip["services"]:
                key = (
                    svc["protocol"],
                    svc["port"],
                    svc["fwmark"],
                    _ports(svc["ports"]),
                    svc["scheduler"],
                    svc["forwarding"],
                    json.dumps(svc["persistence"], sort_keys=True),
                    tuple(sorted(svc["scheduler_flags"])),
                    svc["one_packet"],
                )
                members = Counter((rs["address"], rs["port"], rs["weight"], rs["host"]) for rs in svc["real_servers"])
                services.append((key, members))
            got[director["name"]][vip["name"]] = (vip["address"], sorted(services, key=repr))
    return got


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_json_says_what_the_cluster_file_says(case: Path) -> None:
    run = lvsgen("show", "--json", str(case_input(case)))
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert run.stdout == json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "keys sorted, one layout"
    assert shown["format"] == 1
    document = json.loads(case_input(case).read_text())
    assert (shown["cluster"], shown["source"]) == (document["cluster"], case_input(case).name)
    assert [d["name"] for d in shown["directors"]] == sorted(d for d, h in document["hosts"].items() if h["role"] == "director")
    assert _from_show(shown) == _from_input(document)


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_table_is_aligned_and_says_what_the_json_says(case: Path) -> None:
    """Cut every row at its header's column starts: the cells are the JSON's, row for row."""
    table = lvsgen("show", str(case_input(case))).stdout
    shown = json.loads(lvsgen("show", "--json", str(case_input(case))).stdout)
    assert all(line == line.rstrip() for line in table.splitlines()), "no trailing blanks"
    heads = [line for line in table.splitlines() if line.lstrip().startswith("VIP ")]
    assert heads and len(set(heads)) == 1, "one header, the same column widths for every director"
    starts = [heads[0].index(h) for h in ("VIP", "SERVICE", "SCHEDULER", "PERSISTENCE", "FORWARDING", "REAL SERVER", "HOST")]
    rows = [line for line in table.splitlines() if line.startswith("  ") and line not in heads]
    cells = [[line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])] for line in rows]
    for line in rows:
        assert all(line[s - 1] == " " for s in starts[1:]), f"a cell runs into the next column: {line!r}"
    want = []
    for director in shown["directors"]:
        for vip in director["vips"]:
            for n, svc in enumerate(vip["services"]):
                p = svc["persistence"]
                name = f"{svc['protocol']} {_endpoint(vip['address'], svc['port'])}"
                if svc["fwmark"] is not None:
                    ports = ",".join(map(str, svc["ports"]))
                    name = f"fwmark {svc['fwmark']} {svc['protocol']} {_endpoint(vip['address'], 0)[:-2]}:{ports}"
                head = [
                    name,
                    svc["scheduler"]
                    + (f" ({','.join(svc['scheduler_flags'])})" if svc["scheduler_flags"] else "")
                    + (" ops" if svc["one_packet"] else ""),
                    "-" if p is None else f"{p['timeout']}s /{p['granularity']}" + (f" {p['engine']}" if p["engine"] else ""),
                    svc["forwarding"],
                ]
                for i, rs in enumerate(svc["real_servers"]):
                    first = [vip["name"] if n == 0 and i == 0 else ""] + (head if i == 0 else [""] * len(head))
                    want.append(first + [_endpoint(rs["address"], rs["port"]), rs["host"] or "-", str(rs["weight"])])
    # The last cell runs from HOST to the end of the line: the host, then the right-aligned weight.
    assert [c[:6] + c[6].split() for c in cells] == want


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@pytest.mark.parametrize("form", [(), ("--json",)], ids=["table", "json"])
@pytest.mark.parametrize("case", error_cases(), ids=lambda p: p.name)
def test_invalid_input_is_reported_as_build_reports_it(case: Path, form: tuple[str, ...]) -> None:
    run = lvsgen("show", *form, "cluster.json", cwd=case)
    assert run.stderr == (case / "stderr").read_text()
    assert run.returncode == int((case / "exit_code").read_text())
    assert run.stdout == ""


def test_missing_file(tmp_path: Path) -> None:
    run = lvsgen("show", str(tmp_path / "nope.json"))
    assert run.returncode == 1 and "nope.json: no such file" in run.stderr and "Traceback" not in run.stderr
