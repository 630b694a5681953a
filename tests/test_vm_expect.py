"""tests/vm/expect.py without a VM: what the VM tests expect, checked against lvsgen's output.

expect.py derives a director's IPVS table, thresholds and timeouts from the raw cluster file;
lvsgen derives its rules file, thresholds file and setup.sh from the same file by its own code.
The two share nothing, so where they agree on every shipped cluster file (the VM ones, the
golden cases, the examples) and on drawn ones, neither misread the file the same way. The
rest: the readers of what a director prints, the comparison that fails when a line is missing
or extra, and the answer rules (the ports tried of a range, persistence across a firewall
mark's ports, the sh/mh rules and their false-failure rate).
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from cases import ROOT, case_input, golden_cases, lvsgen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(ROOT / "tests" / "vm"))

import expect  # noqa: E402
from expect import (  # noqa: E402
    Cluster,
    check_answers,
    expected_answers,
    expected_table,
    expected_thresholds,
    expected_timeouts,
    marked_ports,
    parse_thresholds,
    parse_timeouts,
    table_problems,
)

VM_FILES = sorted((ROOT / "tests" / "vm").glob("*/cluster*.json"))


def _inputs() -> list[Path]:
    """Every shipped cluster file once (a golden case's input is often a link to an example)."""
    seen: dict[Path, Path] = {}
    for path in VM_FILES + [case_input(case) for case in golden_cases()] + sorted((ROOT / "examples").glob("*.json")):
        seen.setdefault(path.resolve(), path)
    return list(seen.values())


INPUTS = _inputs()
# Shipped files expect.py refuses (it raises ValueError), by path relative to the repository,
# with the words its message must hold. Every VM file must be handled, so none is here.
KNOWN_UNHANDLED: dict[str, str] = {}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _thresholds_file(path: Path) -> dict[str, tuple[int, int]]:
    """lvsgen's etc/lvsgen/ipvs.thresholds: 'SERVICE -r RS -x U -y L' lines, non-zero ones only."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.fullmatch(r"(.+ -r \S+) -x (\d+) -y (\d+)", line)
            assert m, f"{path}: {line!r}"
            out[m[1]] = (int(m[2]), int(m[3]))
    return out


def _setup_timeouts(setup: Path) -> tuple[int, int, int]:
    """The timeouts a director's setup.sh sets: LVS_TIMEOUTS='TCP TCPFIN UDP', 0 (or none at
    all) for one the host keeps, which on a fresh director is the kernel's."""
    m = re.search(r"^LVS_TIMEOUTS='([0-9 ]*)'$", setup.read_text(), flags=re.MULTILINE)
    assert m, f"{setup}: no LVS_TIMEOUTS"
    given = [int(x) for x in m[1].split()] or [0, 0, 0]
    tcp, tcpfin, udp = (g or k for g, k in zip(given, expect.KERNEL_TIMEOUTS, strict=True))
    return tcp, tcpfin, udp


def _agree(cluster: Cluster, out: Path) -> list[str]:
    """What lvsgen's tree OUT and expect.py disagree on, director by director."""
    problems = []
    for director in cluster.directors():
        folder = out / director
        rules = folder / "etc/lvsgen/ipvsadm.rules"
        have = rules.read_text().splitlines() if rules.exists() else []  # a director that owns nothing
        want = expected_table(cluster, director)
        if sorted(want) != sorted(have):
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            problems.append(f"{director}: the rules file lacks {missing} and has {extra} (or a line twice)")
        thresholds = expected_thresholds(cluster, director)
        # "-a SERVICE -r RS OPTIONS" -> "SERVICE -r RS"
        real_servers = {re.sub(r"^-a (.+ -r \S+) .*$", r"\1", line) for line in have if line.startswith("-a ")}
        if set(thresholds) != real_servers:
            problems.append(f"{director}: expected_thresholds names {sorted(thresholds)}, the rules file {sorted(real_servers)}")
        file_thresholds = _thresholds_file(folder / "etc/lvsgen/ipvs.thresholds")
        if {k: v for k, v in thresholds.items() if v != (0, 0)} != file_thresholds:
            problems.append(f"{director}: thresholds {thresholds}, lvsgen's file {file_thresholds}")
        if expected_timeouts(cluster, director) != _setup_timeouts(folder / "setup.sh"):
            problems.append(f"{director}: timeouts {expected_timeouts(cluster, director)}, setup.sh {_setup_timeouts(folder / 'setup.sh')}")
    return problems


# --- two derivations of every shipped file ------------------------------------------------------


def test_every_vm_cluster_file_is_among_the_inputs() -> None:
    assert VM_FILES, "no tests/vm/*/cluster*.json found"
    assert set(VM_FILES) <= set(INPUTS)


@pytest.mark.parametrize("path", INPUTS, ids=[_rel(p) for p in INPUTS])
def test_expect_and_lvsgen_agree_on_the_table_thresholds_and_timeouts(path: Path, tmp_path: Path) -> None:
    run = lvsgen("build", str(path), "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    cluster = Cluster(path)
    try:
        for director in cluster.directors():
            expected_table(cluster, director)
    except ValueError as e:
        assert path not in VM_FILES, f"expect.py must handle every VM cluster file: {e}"
        assert _rel(path) in KNOWN_UNHANDLED, f"{_rel(path)}: expect.py refuses it ({e}); teach it, or add it to KNOWN_UNHANDLED"
        pytest.skip(f"expect.py cannot compute {_rel(path)}: {e}")
    assert _agree(cluster, tmp_path / "out") == []


def test_the_agreement_check_can_fail(tmp_path: Path) -> None:
    """Positive control: a rules file, thresholds file or setup.sh that says otherwise is named."""
    path = ROOT / "tests/vm/features/cluster.json"
    run = lvsgen("build", str(path), "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    cluster, lb = Cluster(path), tmp_path / "out" / "lb"
    assert _agree(cluster, tmp_path / "out") == []
    edits = [
        (lb / "etc/lvsgen/ipvsadm.rules", "-a -f 7 -r 192.0.2.12:0 -g -w 1\n", "", "lb: the rules file lacks ['-a -f 7 -r 192.0.2.12:0 -g -w 1']"),
        (lb / "etc/lvsgen/ipvs.thresholds", "-x 50 -y 0", "-x 50 -y 1", "lb: thresholds "),
        (lb / "setup.sh", "LVS_TIMEOUTS='600 0 60'", "LVS_TIMEOUTS='600 0 0'", "lb: timeouts (600, 120, 60), setup.sh (600, 120, 300)"),
    ]
    for file, old, new, problem in edits:
        text = file.read_text()
        assert old in text, (file, old)
        file.write_text(text.replace(old, new))
        problems = _agree(cluster, tmp_path / "out")
        assert any(p.startswith(problem) for p in problems), problems
        file.write_text(text)


def test_the_files_expect_refuses_are_few_named_and_still_refused() -> None:
    assert len(KNOWN_UNHANDLED) <= 3, KNOWN_UNHANDLED
    for rel, words in KNOWN_UNHANDLED.items():
        assert not rel.startswith("tests/vm/"), rel
        cluster = Cluster(ROOT / rel)
        with pytest.raises(ValueError, match=re.escape(words)):
            for director in cluster.directors():
                expected_table(cluster, director)


def test_the_fields_expect_reads_are_exactly_the_schemas() -> None:
    """A field the schema gains must be taught to expect.py (it refuses unknown ones)."""
    defs = expect.SCHEMA["$defs"]
    assert set(defs["service"]["properties"]) == expect.SERVICE_FIELDS
    assert set(defs["service"]["properties"]["persistence"]["properties"]) == expect.PERSISTENCE_FIELDS
    assert set(defs["service"]["properties"]["tunnel"]["properties"]) == expect.TUNNEL_FIELDS
    assert set(defs["real_server"]["properties"]) == expect.REAL_SERVER_FIELDS
    timeouts = defs["host"]["properties"]["ipvs_timeouts"]
    assert set(timeouts["properties"]) == {"tcp", "tcpfin", "udp"}
    assert "(900, 120, 300)" in timeouts["description"] and expect.KERNEL_TIMEOUTS == (900, 120, 300)


@st.composite
def _drawn(draw: st.DrawFn) -> dict[str, Any]:
    """A valid cluster from the property tests' strategy, with connection thresholds and
    timeouts added here and there (that strategy draws none), and most localnode real servers
    of NAT and TUN services left out."""
    from test_properties import _valid

    document, _ = draw(_valid())
    for vip in document["vips"].values():
        for svc in vip["services"]:
            if svc["forwarding"] != "dr":  # expect.py refuses localnode under NAT and TUN: fewer of them
                others = [rs for rs in svc["real_servers"] if not rs.get("localnode")]
                svc["real_servers"] = others or svc["real_servers"]
            for rs in svc["real_servers"]:
                if draw(st.integers(0, 3)) == 0:
                    rs["upper_threshold"] = draw(st.integers(0, 2147483647))
                    if rs["upper_threshold"] and draw(st.booleans()):
                        rs["lower_threshold"] = draw(st.integers(0, rs["upper_threshold"]))
    for host in document["hosts"].values():
        if host["role"] == "director" and draw(st.integers(0, 3)) == 0:
            keys = draw(st.lists(st.sampled_from(["tcp", "tcpfin", "udp"]), unique=True, min_size=1))
            host["ipvs_timeouts"] = {k: draw(st.integers(1, 2147483)) for k in keys}
    return document


def test_expect_and_lvsgen_agree_on_drawn_clusters(tmp_path: Path) -> None:
    """Drawn clusters (every scheduler, flags, persistence with granularity and engine,
    firewall marks with ranges, tunnels, NAT ports, weights, localnode, bare addresses, long
    IPv6 spellings), built in process: expect.py gives lvsgen's table, or refuses."""
    from test_properties import build

    counts = {"drawn": 0, "compared": 0}
    refused: dict[str, int] = {}

    @settings(max_examples=120, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(document=_drawn())
    def one(document: dict[str, Any]) -> None:
        counts["drawn"] += 1
        n = counts["drawn"]
        src, out = tmp_path / f"c{n}.json", tmp_path / f"out{n}"
        src.write_text(json.dumps(document, indent=1))
        run = build(src, out)
        assert run.code == 0, run.stderr
        cluster = Cluster(copy.deepcopy(document))
        try:
            problems = _agree(cluster, out)
        except ValueError as e:
            reason = re.sub(r"\$\S*|\d+", "#", str(e))
            refused[reason] = refused.get(reason, 0) + 1
            return
        assert problems == [], (json.dumps(document), problems)
        counts["compared"] += 1

    one()
    print(f"\ndrawn {counts['drawn']}, compared {counts['compared']}, refused {refused}")
    assert counts["compared"] >= counts["drawn"] * 3 // 4, (counts, refused)
    assert all("localnode" in r for r in refused), refused


# --- expected_table on hand-made files ------------------------------------------------------------


def _doc(services: list[dict], vip: str = "192.0.2.100", **director: Any) -> dict:
    six = ":" in vip
    return {
        "cluster": "t",
        "hosts": {
            "lb": {"role": "director", "interface": "eth0", "address": "2001:db8::2/64" if six else "192.0.2.2/24", **director},
            "rs1": {"role": "real-server", "interface": "eth0", "address": "2001:db8::11/64" if six else "192.0.2.11/24"},
            "rs2": {"role": "real-server", "interface": "eth0", "address": "2001:db8::12/64" if six else "192.0.2.12/24"},
        },
        "vips": {"v": {"address": vip, "director": "lb", "services": services}},
    }


def test_expected_table_spells_what_ipvsadm_prints() -> None:
    doc = _doc([
        {"port": 80, "scheduler": "sh", "scheduler_flags": ["sh-port", "sh-fallback"], "forwarding": "dr",
         "persistence": {"timeout": 300, "granularity": 24}, "real_servers": [{"host": "rs1", "weight": 3}, {"address": "192.0.2.50", "weight": 0}]},
        {"protocol": "udp", "port": 5060, "scheduler": "rr", "one_packet": True, "forwarding": "nat",
         "persistence": {"timeout": 60, "engine": "sip", "granularity": 32}, "real_servers": [{"host": "rs1", "port": 5061}]},
        {"protocol": "sctp", "port": 3868, "forwarding": "tun", "tunnel": {"type": "gue", "port": 6080},
         "real_servers": [{"host": "rs2"}]},
        {"fwmark": 7, "ports": [80, "8000-8009"], "protocol": "udp", "scheduler": "rr", "forwarding": "nat",
         "real_servers": [{"host": "rs1"}, {"host": "rs2", "port": 8080}, {"host": "lb", "localnode": True}]},
    ])
    with pytest.raises(ValueError, match="localnode real server under nat"):
        expected_table(Cluster(doc), "lb")
    doc["vips"]["v"]["services"][3]["real_servers"].pop()
    assert sorted(expected_table(Cluster(doc), "lb")) == sorted([
        "-A -t 192.0.2.100:80 -s sh -p 300 -M 255.255.255.0 -b sh-fallback,sh-port",
        "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 3",
        "-a -t 192.0.2.100:80 -r 192.0.2.50:80 -g -w 0",
        "-A -u 192.0.2.100:5060 -s rr -p 60 --pe sip -o",
        "-a -u 192.0.2.100:5060 -r 192.0.2.11:5061 -m -w 1",
        "-A --sctp-service 192.0.2.100:3868 -s wlc",
        "-a --sctp-service 192.0.2.100:3868 -r 192.0.2.12:3868 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum",
        "-A -f 7 -s rr",
        "-a -f 7 -r 192.0.2.11:0 -m -w 1",
        "-a -f 7 -r 192.0.2.12:8080 -m -w 1",
    ])


def test_expected_table_of_an_ipv6_director() -> None:
    doc = _doc([
        {"port": 80, "scheduler": "mh", "scheduler_flags": ["mh-fallback"], "forwarding": "dr",
         "persistence": {"timeout": 60, "granularity": 64},
         "real_servers": [{"host": "rs1"}, {"host": "lb", "localnode": True}, {"address": "2001:DB8:0:0:0:0:0:50"}]},
        {"fwmark": 5, "ports": [443], "persistence": {"timeout": 300, "granularity": 128}, "forwarding": "dr",
         "real_servers": [{"host": "rs2", "upper_threshold": 9}]},
    ], vip="2001:db8:0::100")
    cluster = Cluster(doc)
    assert sorted(expected_table(cluster, "lb")) == sorted([
        "-A -t [2001:db8::100]:80 -s mh -p 60 -M 64 -b mh-fallback",
        "-a -t [2001:db8::100]:80 -r [2001:db8::11]:80 -g -w 1",
        "-a -t [2001:db8::100]:80 -r [2001:db8::2]:80 -g -w 1",
        "-a -t [2001:db8::100]:80 -r [2001:db8::50]:80 -g -w 1",
        "-A -f 5 -6 -s wlc -p 300",
        "-a -f 5 -6 -r [2001:db8::12]:0 -g -w 1",
    ])
    assert expected_thresholds(cluster, "lb") == {
        "-t [2001:db8::100]:80 -r [2001:db8::11]:80": (0, 0),
        "-t [2001:db8::100]:80 -r [2001:db8::2]:80": (0, 0),
        "-t [2001:db8::100]:80 -r [2001:db8::50]:80": (0, 0),
        "-f 5 -6 -r [2001:db8::12]:0": (9, 0),
    }


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(weight_watchers=1), "cannot yet compute weight_watchers"),
    (lambda s: s["real_servers"][0].update(colour="red"), "cannot yet compute colour"),
    (lambda s: s["persistence"].update(engine="sip"), "the sip engine on tcp"),
    (lambda s: s.update(tunnel={"type": "gre"}), "a tunnel under dr"),
    (lambda s: s["real_servers"][0].update(port=81), "a port remapped under dr"),
    (lambda s: s["real_servers"][0].update(lower_threshold=5), "lower_threshold 5 with upper_threshold 0"),
    (lambda s: s["persistence"].update(granularity=33), "granularity 33 on an IPv4 VIP"),
    (lambda s: s.update(scheduler_flags=["mh-port"]), "flags ['mh-port'] on the sh scheduler"),
    (lambda s: s.update(real_servers=[{"address": "::ffff:192.0.2.11"}]), "how ipvsadm spells the address ::ffff:192.0.2.11"),
])
def test_expected_table_refuses_what_it_cannot_derive(change, words: str) -> None:
    svc = {"port": 80, "scheduler": "sh", "forwarding": "dr", "persistence": {"timeout": 1}, "real_servers": [{"host": "rs1"}]}
    change(svc)
    cluster = Cluster(_doc([svc]))
    with pytest.raises(ValueError, match=re.escape(words)):
        expected_table(cluster, "lb")
        expected_thresholds(cluster, "lb")


def test_the_timeouts_are_the_files_and_the_kernels() -> None:
    assert expected_timeouts(Cluster(_doc([{"port": 80, "forwarding": "dr", "real_servers": [{"host": "rs1"}]}])), "lb") == (900, 120, 300)
    cluster = Cluster(_doc([{"port": 80, "forwarding": "dr", "real_servers": [{"host": "rs1"}]}], ipvs_timeouts={"tcp": 600, "udp": 60}))
    assert expected_timeouts(cluster, "lb") == (600, 120, 60)
    with pytest.raises(ValueError, match="not a director"):
        expected_timeouts(cluster, "rs1")


# --- reading what a director prints, and the comparison ---------------------------------------------

LISTING = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn
  -> RemoteAddress:Port
TCP  192.0.2.122:80 rr
  -> 192.0.2.11:80                1          0          0          3
  -> 192.0.2.12:80                0          0          1          0
UDP  [2001:db8::1]:53 mh (mh-port) persistent 30 mask 64 ops
  -> [2001:db8::11]:53            100        50         0          0
SCTP 192.0.2.120:3868 rr
  -> 192.0.2.11:3868              0          0          0          0
FWM  7 rr persistent 300
  -> 192.0.2.11:0                 0          0          0          0
  -> 192.0.2.12:0                 50         0          0          0
FWM  5 IPv6 rr
  -> [2001:db8::12]:0             0          0          0          0
"""


def test_parse_thresholds_reads_every_kind_of_service() -> None:
    assert parse_thresholds(LISTING) == {
        "-t 192.0.2.122:80 -r 192.0.2.11:80": (1, 0),
        "-t 192.0.2.122:80 -r 192.0.2.12:80": (0, 0),
        "-u [2001:db8::1]:53 -r [2001:db8::11]:53": (100, 50),
        "--sctp-service 192.0.2.120:3868 -r 192.0.2.11:3868": (0, 0),
        "-f 7 -r 192.0.2.11:0": (0, 0),
        "-f 7 -r 192.0.2.12:0": (50, 0),
        "-f 5 -6 -r [2001:db8::12]:0": (0, 0),
    }
    assert parse_thresholds("IP Virtual Server version 1.2.1 (size=4096)\n") == {}


@pytest.mark.parametrize("text", [
    "-A -t 192.0.2.1:80 -s rr\n",  # ipvsadm -S, not -L
    "  -> 192.0.2.11:80 0 0 0 0\n",  # a real server before any service
    "TCP  192.0.2.1:80 rr\n  -> 192.0.2.11:80 0\n",  # cut short
    "TCP  192.0.2.1:80 rr\n  -> 192.0.2.11:80 0 0 0 0\n  -> 192.0.2.11:80 0 0 0 0\n",  # twice
])
def test_parse_thresholds_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError):
        parse_thresholds(text)


def test_parse_timeouts() -> None:
    assert parse_timeouts("Timeout (tcp tcpfin udp): 900 120 300\n") == (900, 120, 300)
    assert parse_timeouts("Timeout (tcp tcpfin udp): 600 120 60") == (600, 120, 60)
    for text in ("", "Timeout (tcp tcpfin udp): 900 120\n", "IP Virtual Server version 1.2.1 (size=4096)\n"):
        with pytest.raises(ValueError):
            parse_timeouts(text)


TABLE_DOC = {
    "cluster": "t",
    "hosts": {
        "lb": {"role": "director", "interface": "eth0", "address": "192.0.2.2/24", "ipvs_timeouts": {"udp": 60}},
        "lb2": {"role": "director", "interface": "eth0", "address": "192.0.2.3/24"},
        "rs1": {"role": "real-server", "interface": "eth0", "address": "192.0.2.11/24"},
        "rs2": {"role": "real-server", "interface": "eth0", "address": "192.0.2.12/24"},
    },
    "vips": {
        "web": {"address": "192.0.2.122", "director": "lb", "services": [
            {"port": 80, "scheduler": "rr", "forwarding": "dr", "real_servers": [{"host": "rs1", "upper_threshold": 1}, {"host": "rs2"}]},
            {"fwmark": 7, "ports": [80, 8080], "scheduler": "rr", "persistence": {"timeout": 300}, "forwarding": "dr",
             "real_servers": [{"host": "rs1"}, {"host": "rs2", "upper_threshold": 50, "lower_threshold": 10}]},
        ]},
    },
}
SAVED = """\
-A -t 192.0.2.122:80 -s rr
-a -t 192.0.2.122:80 -r 192.0.2.11:80 -g -w 1
-a -t 192.0.2.122:80 -r 192.0.2.12:80 -g -w 1
-A -f 7 -s rr -p 300
-a -f 7 -r 192.0.2.11:0 -g -w 1
-a -f 7 -r 192.0.2.12:0 -g -w 1
"""
SHOWN = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn
  -> RemoteAddress:Port
TCP  192.0.2.122:80 rr
  -> 192.0.2.11:80                1          0          0          0
  -> 192.0.2.12:80                0          0          0          0
FWM  7 rr persistent 300
  -> 192.0.2.11:0                 0          0          0          0
  -> 192.0.2.12:0                 50         10         0          0
"""
EMPTY = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn\n  -> RemoteAddress:Port\n"


def _tables() -> dict:
    return {"lb": {"saved": SAVED, "thresholds": SHOWN, "timeouts": "Timeout (tcp tcpfin udp): 900 120 60\n"},
            "lb2": {"saved": "", "thresholds": EMPTY, "timeouts": "Timeout (tcp tcpfin udp): 900 120 300\n"}}


def test_table_problems_finds_none_in_a_right_table() -> None:
    assert table_problems(Cluster(TABLE_DOC), _tables()) == []


@pytest.mark.parametrize("change, problem", [
    (lambda t: t["lb"].update(saved=SAVED.replace("-a -f 7 -r 192.0.2.12:0 -g -w 1\n", "")),
     "lb: ipvsadm -S -n lacks '-a -f 7 -r 192.0.2.12:0 -g -w 1'"),
    (lambda t: t["lb"].update(saved=SAVED + "-a -f 7 -r 192.0.2.13:0 -g -w 1\n"),
     "lb: ipvsadm -S -n has '-a -f 7 -r 192.0.2.13:0 -g -w 1', which the file does not describe"),
    (lambda t: t["lb"].update(saved=SAVED.replace("-r 192.0.2.11:80 -g -w 1", "-r 192.0.2.11:80 -g -w 2")),
     ("lb: ipvsadm -S -n lacks '-a -t 192.0.2.122:80 -r 192.0.2.11:80 -g -w 1'",
      "lb: ipvsadm -S -n has '-a -t 192.0.2.122:80 -r 192.0.2.11:80 -g -w 2', which the file does not describe")),
    (lambda t: t["lb"].update(saved=SAVED + SAVED.splitlines(True)[1]),  # a line twice
     "lb: ipvsadm -S -n has '-a -t 192.0.2.122:80 -r 192.0.2.11:80 -g -w 1', which the file does not describe"),
    (lambda t: t["lb"].update(thresholds=SHOWN.replace("50         10", "50         0 ")),
     "lb: -f 7 -r 192.0.2.12:0: thresholds (upper, lower) (50, 0), expected (50, 10)"),
    (lambda t: t["lb"].update(thresholds=SHOWN.replace("  -> 192.0.2.11:0                 0          0          0          0\n", "")),
     "lb: ipvsadm -L -n --thresholds lacks -f 7 -r 192.0.2.11:0"),
    (lambda t: t["lb2"].update(thresholds=EMPTY + "TCP  192.0.2.9:80 rr\n  -> 192.0.2.99:80 0 0 0 0\n"),
     "lb2: ipvsadm -L -n --thresholds lists -t 192.0.2.9:80 -r 192.0.2.99:80, which the file does not describe"),
    (lambda t: t["lb"].update(thresholds="garbage\n"), "lb: cannot read ipvsadm -L -n --thresholds"),
    (lambda t: t["lb"].update(timeouts="Timeout (tcp tcpfin udp): 900 120 300\n"),
     "lb: timeouts (tcp tcpfin udp) (900, 120, 300), expected (900, 120, 60)"),
    (lambda t: t["lb"].update(timeouts=""), "lb: cannot read ipvsadm -L --timeout"),
    (lambda t: t.pop("lb2"), "lb2: no table was recorded"),
    (lambda t: t["lb"].pop("timeouts"), "lb: no 'timeouts' was recorded"),
    (lambda t: t.update(rs1=t["lb2"]), "rs1: a table was recorded for a host that is not a director"),
])
def test_table_problems_names_each_mismatch(change, problem: str | tuple[str, ...]) -> None:
    """The check can fail: each mismatch is one problem, named (a changed line is two: the
    line the file gives is missing, the other is extra)."""
    tables = _tables()
    change(tables)
    problems = table_problems(Cluster(TABLE_DOC), tables)
    wanted = (problem,) if isinstance(problem, str) else problem
    assert len(problems) == len(wanted) and all(p.startswith(w) for p, w in zip(problems, wanted, strict=True)), problems


# --- the answer rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ports, tried", [
    ([8000, "9000-9001"], [8000, 9000, 9001]),
    (["8000-8099"], [8000, 8049, 8099]),
    (["8000-8002"], [8000, 8001, 8002]),
    (["80-80", 443], [80, 443]),
    ([443, 80, "79-81"], [443, 80, 79, 81]),
])
def test_a_marked_range_is_tried_at_its_first_last_and_an_inside_port(ports: list, tried: list[int]) -> None:
    assert marked_ports(ports) == tried


def test_the_nat_vm_cluster_tries_each_end_of_its_range_as_one_service() -> None:
    cluster = Cluster(ROOT / "tests/vm/nat/cluster.json")
    marked = [s for s in cluster.services if s["fwmark"] == 3]
    assert [s["port"] for s in marked] == [8000, 9000, 9001]
    assert len({s["group"] for s in marked}) == 1 and {s["group_size"] for s in marked} == {3}
    assert [s["ports"] for s in marked] == [{"app1": p, "app2": 8080} for p in (8000, 9000, 9001)]
    assert len({s["group"] for s in cluster.services}) == 3  # one group per service of the file


def _mark_cluster(**service: Any) -> Cluster:
    svc = {"fwmark": 7, "ports": [80, 8080], "scheduler": "rr", "forwarding": "dr",
           "real_servers": [{"host": "rs1"}, {"host": "rs2"}], **service}
    return Cluster(_doc([svc]))


def test_a_persistent_mark_answered_by_two_real_servers_across_its_ports_is_reported() -> None:
    cluster = _mark_cluster(persistence={"timeout": 300})
    assert [expected_answers(s)[0] for s in cluster.services] == [4, 4]
    one = {"tcp 192.0.2.100:80": ["rs2"] * 4, "tcp 192.0.2.100:8080": ["rs2"] * 4}
    assert check_answers(cluster, one) == []
    split = {"tcp 192.0.2.100:80": ["rs1"] * 4, "tcp 192.0.2.100:8080": ["rs2"] * 4}
    problems = check_answers(cluster, split)
    assert len(problems) == 1 and problems[0].startswith("$.vips.v.services[0] (FWM 7, ports 80, 8080): {'rs1': 4, 'rs2': 4}"), problems
    # each port on its own is still checked
    assert check_answers(cluster, {**one, "tcp 192.0.2.100:80": ["rs1", "rs2", "rs1", "rs1"]})[0].startswith("tcp 192.0.2.100:80: ")


def test_a_mark_without_persistence_is_checked_port_by_port() -> None:
    cluster = _mark_cluster()
    answers = {"tcp 192.0.2.100:80": ["rs1", "rs2", "rs1", "rs2"], "tcp 192.0.2.100:8080": ["rs2", "rs1", "rs2", "rs1"]}
    assert check_answers(cluster, answers) == []
    answers["tcp 192.0.2.100:8080"] = ["rs2"] * 4
    assert check_answers(cluster, answers) == ["tcp 192.0.2.100:8080: {'rs2': 4}, expected {'rs1': 2, 'rs2': 2} (rr: 2 each)"]


def _service(scheduler: str, weights: tuple[int, ...] = (1, 1), **extra: Any) -> dict:
    reals = [{"host": f"rs{i + 1}", "weight": w} for i, w in enumerate(weights)]
    doc = _doc([{"port": 80, "scheduler": scheduler, "forwarding": "dr", "real_servers": reals, **extra}])
    doc["hosts"]["rs3"] = {"role": "real-server", "interface": "eth0", "address": "192.0.2.13/24"}
    return Cluster(doc).services[0]


def test_sh_and_mh_without_the_port_flag_give_one_client_one_real_server() -> None:
    for svc in (_service("sh"), _service("sh", scheduler_flags=["sh-fallback"]), _service("mh", (1, 0), scheduler_flags=["mh-fallback"])):
        n, split, rule = expected_answers(svc)
        assert (n, split) == (4, None) and "one real server" in rule
        cluster = Cluster({"cluster": "t", "hosts": {}, "vips": {}})
        cluster.services = [svc]
        assert check_answers(cluster, {svc["key"]: ["rs1"] * 4}) == []
        assert check_answers(cluster, {svc["key"]: ["rs1", "rs1", "rs2", "rs1"]}) != []


def test_sh_and_mh_with_the_port_flag_send_enough_requests_to_see_every_real_server() -> None:
    """n is the fewest requests with k * (1 - p)^n below 1e-9, p the smallest server's share."""
    for svc, k, p in [
        (_service("sh", scheduler_flags=["sh-port"]), 2, 0.5),
        (_service("sh", (1, 3), scheduler_flags=["sh-port", "sh-fallback"]), 2, 0.25),
        (_service("sh", (1, 1, 1), scheduler_flags=["sh-port"]), 3, 85 / 256),  # 256 buckets: 85, 85, 86
        (_service("mh", scheduler_flags=["mh-port"]), 2, 0.45),  # 0.9 x the weight share
    ]:
        n, split, rule = expected_answers(svc)
        assert split is None and "every real server" in rule and "1e-09" in rule
        assert k * (1 - p) ** n < 1e-9 <= k * (1 - p) ** (n - 1), (svc["scheduler"], n)
    assert expected_answers(_service("sh", scheduler_flags=["sh-port"]))[0] == 31
    assert expected_answers(_service("mh", scheduler_flags=["mh-port"]))[0] == 36
    # the old count, 3 per real server, misses one of 2 with a chance of 3%
    assert math.isclose(2 * 0.5 ** 6, 0.03125)
    svc = _service("sh", scheduler_flags=["sh-port"])
    cluster = Cluster({"cluster": "t", "hosts": {}, "vips": {}})
    cluster.services = [svc]
    assert check_answers(cluster, {svc["key"]: ["rs1", "rs2"] * 15 + ["rs1"]}) == []
    assert check_answers(cluster, {svc["key"]: ["rs1"] * 31})[0].startswith("tcp 192.0.2.100:80: {'rs1': 31}, expected every one of")


def test_a_hash_that_may_land_on_a_quiesced_real_server_is_refused() -> None:
    for svc in (_service("sh", (1, 0)), _service("dh", (1, 0)), _service("mh", (1, 0), scheduler_flags=["mh-port"])):
        with pytest.raises(ValueError, match="refuses the clients that hash to it"):
            expected_answers(svc)
    assert expected_answers(_service("sh", (1, 0), scheduler_flags=["sh-fallback"]))[0] == 4


@pytest.mark.parametrize("scheduler, weights, extra, n, split, words", [
    ("rr", (1, 1, 0), {}, 4, {"rs1": 2, "rs2": 2}, "rr: 2 each"),
    ("wrr", (1, 3), {}, 8, {"rs1": 2, "rs2": 6}, "wrr: 2 x weight each"),
    ("lc", (1, 1), {}, 6, None, "every real server at least once"),
    ("wlc", (1, 5, 0), {}, 6, None, "every real server at least once"),
    ("dh", (1, 1), {}, 4, None, "one real server"),
    ("fo", (1, 5, 2), {}, 4, {"rs2": 4}, "highest weight"),
    ("fo", (5, 5), {}, 4, None, "one of the real servers of the highest weight"),
    ("sed", (1, 1), {}, 6, None, "only real servers answer"),
    ("twos", (1, 1), {}, 6, None, "only real servers answer"),
    ("lblcr", (1, 1), {}, 6, None, "only real servers answer"),
    ("wrr", (1, 3), {"persistence": {"timeout": 60}}, 4, None, "persistent"),
    ("rr", (0, 0), {}, 0, {}, "nothing to ask"),
])
def test_every_scheduler_has_a_rule(scheduler: str, weights: tuple[int, ...], extra: dict, n: int, split: dict | None, words: str) -> None:
    got = expected_answers(_service(scheduler, weights, **extra))
    assert got[:2] == (n, split) and words in got[2], got


def test_a_threshold_the_requests_may_reach_leaves_only_membership() -> None:
    features = Cluster(ROOT / "tests/vm/features/cluster.json")
    limited = next(s for s in features.services if s["vip"] == "192.0.2.122")
    assert expected_answers(limited) == (6, None, "a real server has a connection threshold (1): only real servers answer")
    marked = [s for s in features.services if s["fwmark"] == 7]  # rs2 at 50: far above what is sent
    assert [expected_answers(s)[2] for s in marked] == ["persistent: one real server for every request"] * 2
    with pytest.raises(ValueError, match=re.escape("refused once ['rs1'] reach their connection thresholds (sh)")):
        expected_answers(_service("sh", (1, 1), real_servers=[{"host": "rs1", "upper_threshold": 2}, {"host": "rs2"}]))
    with pytest.raises(ValueError, match=re.escape("refused once ['rs1', 'rs2'] reach their connection thresholds (rr)")):
        expected_answers(_service("rr", (1, 1), real_servers=[{"host": "rs1", "upper_threshold": 2}, {"host": "rs2", "upper_threshold": 9}]))
    assert expected_answers(_service("rr", (1, 1), real_servers=[{"host": "rs1", "upper_threshold": 2}, {"host": "rs2", "upper_threshold": 900}]))[2] \
        == "a real server has a connection threshold (2): only real servers answer"


def test_every_vm_cluster_file_has_answer_rules() -> None:
    """The VM tests plan every service's requests with expected_answers: none may refuse."""
    for path in VM_FILES:
        cluster = Cluster(path)
        if any(w for s in cluster.services for _, w in s["unmanaged"]):
            continue  # tests/vm/order: tables only, never asked (bare addresses that serve)
        for svc in cluster.services:
            n, _, rule = expected_answers(svc)
            assert n > 0, (path, svc["key"], rule)
