"""`lvsgen import SAVED... -o CLUSTER`: saved IPVS tables in, a cluster file that builds them back.

- Round trip: every director's rules file of every golden case and of every example is imported
  (its director's address and interfaces taken from the case's own cluster file), the result is
  built, and the director's rules file must come back byte for byte. Drawn clusters (the
  strategy of tests/test_properties.py) do the same for hundreds of tables.
- Hostile dumps: each gives exit 1, exactly the expected `FILE:LINE: message` lines, and no file.
- Usage: the director options, standard input, an existing output.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from typer.testing import CliRunner

from cases import ROOT, golden_cases, lvsgen
from lvsgen import cli, importer, model, plan, schema, semantic
from lvsgen.files import RULES

GOLDEN_TABLES = sorted(ROOT.glob("tests/cases/*/expected/*/etc/lvsgen/ipvsadm.rules"))
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
# A table a cluster file cannot express is skipped with the reason import gave; there is none
# among the goldens and examples, and tests/run (LVSGEN_NO_SKIP=1) turns a skip into a failure.
NOT_EXPRESSIBLE = "a cluster file cannot describe it"


def directors(document: dict[str, Any]) -> list[str]:
    return sorted(name for name, host in document["hosts"].items() if host["role"] == "director")


def director_args(document: dict[str, Any], name: str) -> list[str]:
    """--director and --nat for a director, from the cluster file it was built from."""
    host = document["hosts"][name]
    args = ["--director", f"{name}={host['address']}@{host['interface']}"]
    if "nat_address" in host:
        args += ["--nat", f"{name}={host['nat_address']}" + (f"@{host['nat_interface']}" if "nat_interface" in host else "")]
    return args


def run(*args: str, stdin: str | None = None) -> Any:
    """The CLI in process (faster than a subprocess; test_cli.py covers the entry point)."""
    result = CliRunner(env={"LVSGEN_DEBUG": None}).invoke(cli.app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"lvsgen let an exception through: {result.exception!r}") from result.exception
    return result


def rules_of(cluster: Path, out: Path) -> dict[str, bytes]:
    result = run("build", str(cluster), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    return {p.parts[-4]: p.read_bytes() for p in sorted(out.glob("*/etc/lvsgen/ipvsadm.rules"))}


def no_marks(data: bytes) -> bytes:
    """A table without its firewall-mark services, which import cannot take (a saved table
    does not say which ports carry a mark)."""
    return b"".join(line for line in data.splitlines(True) if not line.startswith((b"-A -f ", b"-a -f ")))


def import_and_build(tmp_path: Path, tables: dict[str, Path], document: dict[str, Any]) -> dict[str, bytes]:
    """Import the tables (without their firewall-mark services) and build the result."""
    stripped = {}
    for name, path in tables.items():
        stripped[name] = tmp_path / f"{name}.no-marks.rules"
        stripped[name].write_bytes(no_marks(path.read_bytes()))
    tables = stripped
    args = [f"{name}={path}" for name, path in tables.items()]
    for name in tables:
        args += director_args(document, name)
    imported = tmp_path / "imported.json"
    result = run("import", *args, "-o", str(imported))
    if result.exit_code == 1 and NOT_EXPRESSIBLE in result.stderr:
        pytest.skip(f"the schema cannot express this table: {result.stderr.strip()}")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert run("validate", str(imported)).exit_code == 0
    back = json.loads(imported.read_text())
    # real servers are bare addresses, or the director itself (localnode)
    for vip in back["vips"].values():
        for svc in vip["services"]:
            for rs in svc["real_servers"]:
                assert "address" in rs or rs == {"host": vip["director"], "localnode": True, **{k: rs[k] for k in ("port", "weight") if k in rs}}
    assert set(back["hosts"]) == set(tables)
    return rules_of(imported, tmp_path / "rebuilt")


def _golden_params() -> list[Any]:
    params = []
    for table in GOLDEN_TABLES:
        case = table.parents[4]
        params.append(pytest.param(table, next(case.glob("*.json")), id=f"{case.name}-{table.parts[-4]}"))
    return params


def _example_params() -> list[Any]:
    return [
        pytest.param(example, name, id=f"{example.stem}-{name}")
        for example in EXAMPLES
        for name in directors(json.loads(example.read_text()))
    ]


@pytest.mark.parametrize(("table", "source"), _golden_params())
def test_golden_table_round_trip(tmp_path: Path, table: Path, source: Path) -> None:
    director = table.parts[-4]
    rebuilt = import_and_build(tmp_path, {director: table}, json.loads(source.read_text()))
    assert rebuilt == {director: no_marks(table.read_bytes())}


@pytest.mark.parametrize(("example", "director"), _example_params())
def test_example_table_round_trip(tmp_path: Path, example: Path, director: str) -> None:
    built = rules_of(example, tmp_path / "built")
    table = tmp_path / "built" / director / "etc/lvsgen/ipvsadm.rules"
    rebuilt = import_and_build(tmp_path, {director: table}, json.loads(example.read_text()))
    assert rebuilt == {director: no_marks(built[director])}


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_all_directors_of_a_case_at_once(tmp_path: Path, case: Path) -> None:
    document = json.loads(next(case.glob("*.json")).read_text())
    tables = {name: case / "expected" / name / "etc/lvsgen/ipvsadm.rules" for name in directors(document)}
    rebuilt = import_and_build(tmp_path, tables, document)
    assert rebuilt == {name: no_marks(path.read_bytes()) for name, path in tables.items()}


@pytest.mark.parametrize("table", GOLDEN_TABLES, ids=lambda p: f"{p.parts[-6]}-{p.parts[-4]}")
def test_the_order_of_the_saved_lines_does_not_matter(tmp_path: Path, table: Path) -> None:
    """A live table's order can differ (ipvsadm's comparison wraps; see lvsgen/order.py): the
    services and their real servers shuffled still build the file in ipvsadm's order."""
    blocks: list[list[str]] = []
    for line in table.read_text().splitlines():
        if line.startswith("-A "):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    rng = random.Random(table.as_posix())
    rng.shuffle(blocks)
    for block in blocks:
        tail = block[1:]
        rng.shuffle(tail)
        block[1:] = tail
    shuffled = tmp_path / "shuffled.rules"
    shuffled.write_text("# saved by hand\n\n" + "".join(f"{line}\n" for block in blocks for line in block))
    case = table.parents[4]
    director = table.parts[-4]
    rebuilt = import_and_build(tmp_path, {director: shuffled}, json.loads(next(case.glob("*.json")).read_text()))
    assert rebuilt == {director: no_marks(table.read_bytes())}


def test_import_writes_a_readable_cluster_file() -> None:
    table = ROOT / "tests/cases/shop/expected/lb2/etc/lvsgen/ipvsadm.rules"
    result = run("import", f"lb2={table}", "--director", "lb2=192.0.2.3/24@eth0", "-o", "-")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "{\n"
        '  "cluster": "imported",\n'
        '  "hosts": {\n'
        '    "lb2": {"role": "director", "interface": "eth0", "address": "192.0.2.3/24"}\n'
        "  },\n"
        '  "vips": {\n'
        '    "vip-192-0-2-101": {\n'
        '      "address": "192.0.2.101",\n'
        '      "director": "lb2",\n'
        '      "services": [\n'
        "        {\n"
        '          "protocol": "tcp",\n'
        '          "port": 8080,\n'
        '          "scheduler": "rr",\n'
        '          "forwarding": "dr",\n'
        '          "persistence": {"timeout": 120, "granularity": 24},\n'
        '          "real_servers": [\n'
        '            {"address": "192.0.2.13"},\n'
        '            {"address": "192.0.2.14"},\n'
        '            {"address": "192.0.2.50", "weight": 0}\n'
        "          ]\n"
        "        }\n"
        "      ]\n"
        "    },\n"
        '    "vip-192-0-2-102": {\n'
        '      "address": "192.0.2.102",\n'
        '      "director": "lb2",\n'
        '      "services": [\n'
        "        {\n"
        '          "protocol": "udp",\n'
        '          "port": 53,\n'
        '          "scheduler": "rr",\n'
        '          "forwarding": "dr",\n'
        '          "real_servers": [\n'
        '            {"address": "192.0.2.11"},\n'
        '            {"address": "192.0.2.14"}\n'
        "          ]\n"
        "        }\n"
        "      ]\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


def test_vip_names_are_valid_and_distinct() -> None:
    import ipaddress

    addresses = ["192.0.2.1", "1.2.3.4", "::", "::1", "2001:db8::", "2001:db8::1", "::ffff:192.0.2.1", "1:2:3:4:5:6:7:8", "fe80::1:0:0:0"]
    names = [importer.vip_name(ipaddress.ip_address(a)) for a in addresses]
    pattern = importer._name_pattern()
    assert all(pattern.match(n) for n in names), names
    assert len(set(names)) == len(names)
    assert names[:2] == ["vip-192-0-2-1", "vip-1-2-3-4"]


# --- drawn clusters: every director's table comes back ---------------------------------------
from test_properties import _valid  # noqa: E402  (the strategy that draws valid clusters)


def _rules(document: dict[str, Any]) -> dict[str, str]:
    schema.validate(document)
    semantic.check(document)
    built = plan.plan(model.build(document, "drawn.json"))
    return {host: f.text for host, files in built.items() for f in files if f.path == RULES}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=_valid())
def test_drawn_clusters_round_trip(drawn: tuple[dict[str, Any], dict[str, Any]]) -> None:
    document, _ = drawn
    # A saved table cannot say which ports a firewall-mark service's packets come to.
    for vip in document["vips"].values():
        vip["services"] = [s for s in vip["services"] if "fwmark" not in s]
    document["vips"] = {n: v for n, v in document["vips"].items() if v["services"]}
    assume(document["vips"])
    rules = _rules(document)
    with tempfile.TemporaryDirectory(prefix="lvsgen import ") as tmp:
        args = []
        for name, text in rules.items():
            path = Path(tmp) / f"{name} table"
            path.write_text(text)
            args += [f"{name}={path}", *director_args(document, name)]
        result = run("import", *args, "-o", os.path.join(tmp, "back.json"))
        assert result.exit_code == 0, (document, result.stderr)
        back = _rules(json.loads(Path(tmp, "back.json").read_text()))
    event(f"tables: {sum(1 for t in rules.values() if t)} non-empty")
    # Compared as sorted lines: where a director's VIPs span more than half of the IPv4 space,
    # ipvsadm's own order has a cycle and depends on the input's order (lvsgen/order.py).
    assert {h: sorted(t.splitlines()) for h, t in back.items()} == {h: sorted(t.splitlines()) for h, t in rules.items()}


# --- hostile dumps ---------------------------------------------------------------------------
S = "-A -t 192.0.2.100:80 -s rr\n"
R = "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1\n"
LEAVE_OUT = '; a cluster file cannot describe it: leave this service out of the import (delete its lines) and set "owns_ipvs_table": false on the director, so that setup.sh leaves it alone'
HOSTILE = [
    ("garbage", "hello world\n", "lb1.rules:1: expected a line that starts with -A (a service) or -a (a real server), as 'ipvsadm -S -n' prints them"),
    ("command", "ipvsadm " + S, "lb1.rules:1: this is a command, not a saved table line: drop the leading 'ipvsadm'; a saved table holds '-A ...' and '-a ...' lines"),
    ("edit-line", S + R + "-E -t 192.0.2.100:80 -s wrr\n", "lb1.rules:3: -E has no place in a saved table: it holds only -A (a service) and -a (a real server) lines, as 'ipvsadm -S -n' prints them"),
    ("truncated-service", "-A -t\n", "lb1.rules:1: -t needs ADDRESS:PORT: the line is cut short"),
    ("truncated-server", S + "-a -t 192.0.2.100:80 -r\n", "lb1.rules:2: -r needs ADDRESS:PORT: the line is cut short"),
    ("truncated-weight", S + "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w\n", "lb1.rules:2: no -w WEIGHT: ipvsadm -S prints it on every real server line; is the line cut short?"),
    ("cut-mid-address", S + "-a -t 192.0.2.100:80 -r 192.0.2.1", 'lb1.rules:2: "192.0.2.1" is not ADDRESS:PORT: write 192.0.2.1:80, or [2001:db8::1]:80 for IPv6'),
    ("server-before-service", R + S, "lb1.rules:1: real server 192.0.2.11:80 comes before its service's -A line (line 2): ipvsadm -S prints each service's -A line before its real servers"),
    ("server-without-service", S + R + "-a -t 192.0.2.100:81 -r 192.0.2.11:81 -g -w 1\n", "lb1.rules:3: real server 192.0.2.11:81 of service -t 192.0.2.100:81, which no -A line adds: add its -A line before it"),
    ("duplicate-service", S + R + "-A -t 192.0.2.100:80 -s wrr\n", "lb1.rules:3: service -t 192.0.2.100:80 is already added at line 1: a saved table lists each service once"),
    ("duplicate-server", S + R + R.replace("-w 1", "-w 2"), "lb1.rules:3: real server 192.0.2.11:80 of service -t 192.0.2.100:80 is already listed at line 2: a saved table lists each real server of a service once"),
    ("bad-address", "-A -t 192.0.2.300:80 -s rr\n", 'lb1.rules:1: "192.0.2.300" in "192.0.2.300:80" is not an IP address'),
    ("bad-port", "-A -t 192.0.2.100:65536 -s rr\n", 'lb1.rules:1: port 65536 in "192.0.2.100:65536" is out of range: a port is at most 65535'),
    ("ipv6-without-brackets", "-A -t 2001:db8::1:80 -s rr\n", 'lb1.rules:1: "2001:db8::1:80" is not ADDRESS:PORT: write 192.0.2.1:80, or [2001:db8::1]:80 for IPv6'),
    ("names", "-A -t www.example.net:http -s rr\n", "lb1.rules:1: \"www.example.net:http\" has names instead of numbers: save the table with 'ipvsadm -S -n' (-n prints addresses and ports as numbers)"),
    (
        "listing",
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n",
        "lb1.rules:1: this looks like 'ipvsadm -L -n' output (the listing); save the table with 'ipvsadm -S -n' instead\n"
        "lb1.rules:2: this looks like 'ipvsadm -L -n' output (the listing); save the table with 'ipvsadm -S -n' instead",
    ),
    ("control-character", S + R.replace(" -g", "\x00-g"), "lb1.rules:2: unexpected control character \"\\u0000\": is this the text 'ipvsadm -S -n' printed?"),
    ("firewall-mark", "-A -f 7 -s rr\n-a -f 7 -r 192.0.2.11:0 -g -w 1\n", "lb1.rules:1: firewall-mark service (-f 7): a saved table does not say which packets carry mark 7 (the host's firewall rules do); leave this service out of the import (delete its lines) and add it to the cluster file by hand, with \"fwmark\": 7 and the \"ports\" that get the mark"),
    ("one-packet-tcp", S.replace("rr", "rr -o") + R, "lb1.rules:1: -o: one-packet scheduling is for UDP services only (the kernel refuses it for tcp); remove \"one_packet\" or use \"protocol\": \"udp\""),
    ("engine-without-persistence", S.replace("rr", "rr --pe sip") + R, "lb1.rules:1: --pe sip without -p: a persistence engine works on a persistent service; add -p TIMEOUT or drop --pe"),
    ("flag-of-another-scheduler", S.replace("rr", "rr -b sh-port") + R, "lb1.rules:1: -b: \"sh-port\" is a flag of the sh scheduler, and this service uses \"rr\": remove the flag, or set \"scheduler\": \"sh\""),
    ("long-option", S.replace("rr", "rr --ops") + R, "lb1.rules:1: unknown option \"--ops\": lvsgen imports the options 'ipvsadm -S -n' prints for what a cluster file can describe (--pe, -M, -b, -o, -p, -s)"),
    ("bad-tunnel-type", S + R.replace("-g -w 1", "-i -w 1 --tun-type foo"), "lb1.rules:2: --tun-type: 'foo' is not one of ['ipip', 'gue', 'gre']"),
    ("bad-tunnel-port", S + R.replace("-g -w 1", "-i -w 1 --tun-type gue --tun-port 0 --tun-nocsum"), "lb1.rules:2: --tun-port: 0 is less than the minimum of 1"),
    ("threshold-on-a-service", S.replace("-s rr", "-s rr -y 5") + R, "lb1.rules:1: a lower connection threshold (-y) in a saved table: 'ipvsadm -S' never prints thresholds, so this line was not saved by it; delete -y here and give the real server \"upper_threshold\"/\"lower_threshold\" in the cluster file"),
    ("threshold", S + R.replace("-w 1", "-w 1 -x 100"), "lb1.rules:2: an upper connection threshold (-x) in a saved table: 'ipvsadm -S' never prints thresholds, so this line was not saved by it; delete -x here and give the real server \"upper_threshold\"/\"lower_threshold\" in the cluster file"),
    (
        "two-tunnels",
        S + "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum\n"
        "-a -t 192.0.2.100:80 -r 192.0.2.12:80 -i -w 1 --tun-type ipip\n",
        "lb1.rules:3: the tunnel (--tun-type ipip) differs from the service's first real server's (--tun-type gue --tun-port 6080, line 2): a cluster file gives a service one tunnel",
    ),
    ("tunnel-on-dr", S + R.replace("-g -w 1", "-g -w 1 --tun-type gre"), "lb1.rules:2: --tun-type on a -g real server: only -i (tun) real servers have a tunnel"),
    ("mixed-forwarding", S + R + "-a -t 192.0.2.100:80 -r 192.0.2.12:80 -m -w 1\n", "lb1.rules:3: forwarding -m differs from -g of the service's first real server (line 2): a cluster file gives a service one forwarding method"),
    ("dr-port-remap", S + "-a -t 192.0.2.100:80 -r 192.0.2.11:8080 -g -w 1\n", "lb1.rules:2: real server port 8080 differs from the service port 80: under -g the kernel uses the service port (ipvsadm -S prints it); only -m (nat) remaps ports"),
    (
        "no-real-servers",
        S + R + "-A -u 192.0.2.100:53 -s rr\n",
        'lb1.rules:3: service -u 192.0.2.100:53 has no real servers, and a service in a cluster file needs at least one: add its real servers, or leave it out of the import (delete the line) and set "owns_ipvs_table": false on the director, so that setup.sh leaves it alone',
    ),
    ("netmask-without-persistence", S.replace("rr", "rr -M 255.255.255.0") + R, "lb1.rules:1: -M 255.255.255.0 without -p: a netmask groups the clients of a persistent service; add -p TIMEOUT or drop -M"),
    ("netmask-not-contiguous", S.replace("rr", "rr -p 60 -M 255.0.255.0") + R, "lb1.rules:1: -M 255.0.255.0 is not a netmask like 255.255.255.0 (one run of ones, then zeros): a cluster file gives persistence granularity as a prefix length"),
    ("scheduler", S.replace("rr", "fancy") + R, "lb1.rules:1: -s: 'fancy' is not one of ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'fo', 'ovf', 'mh', 'twos']"),
    ("weight", S + R.replace("-w 1", "-w 70000"), "lb1.rules:2: -w: 70000 is greater than the maximum of 65535"),
    ("port-zero", "-A -t 192.0.2.100:0 -s rr -p 300\n-a -t 192.0.2.100:0 -r 192.0.2.11:0 -g -w 1\n", "lb1.rules:1: port: 0 is less than the minimum of 1"),
    ("families", S + "-a -t 192.0.2.100:80 -r [2001:db8::11]:80 -i -w 1 --tun-type ipip\n", "lb1.rules:2: real server 2001:db8::11 is IPv6 but the VIP 192.0.2.100 is IPv4; IPVS forwards within one family"),
    ("spelling", S + "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -i -w 1\n", "lb1.rules:2: the cluster file gives this line back as \"-a -t 192.0.2.100:80 -r 192.0.2.11:80 -i -w 1 --tun-type ipip\": write it the way 'ipvsadm -S -n' prints it"),
    (
        "nat-without-nat-address",
        S + "-a -t 192.0.2.100:80 -r 198.51.100.11:8080 -m -w 1\n",
        "lb1.rules:2: real server 198.51.100.11 is not on a network of director \"lb1\" (192.0.2.0/24): under nat the real server's default route must point at the director; "
        'give the director "nat_address" on the real servers\' network (with lvsgen import: --nat DIRECTOR=ADDRESS/PREFIX[@INTERFACE])',
    ),
    ("vip-is-the-director", S.replace("192.0.2.100", "192.0.2.2") + R.replace("192.0.2.100", "192.0.2.2"), 'lb1.rules:1: 192.0.2.2 is the address of host "lb1"; a VIP must be an address of its own'),
    ("binary", b"\xff\xfe\x00-A", "lvsgen: import: lb1.rules: not text (byte 1 is not UTF-8): give the file 'ipvsadm -S -n' wrote"),
    ("empty", "# nothing here\n\n", "lvsgen: import: lb1.rules: no services: there is nothing to import (a cluster file needs at least one VIP)"),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=i) for i, t, m in HOSTILE])
def test_hostile_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | bytes, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lb1.rules").write_bytes(text if isinstance(text, bytes) else text.encode())
    result = run("import", "lb1.rules", "--director", "lb1=192.0.2.2/24", "-o", "cluster.json")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == message + "\nlvsgen: import: nothing was written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb1.rules"], "nothing may be written"


def test_every_problem_of_a_dump_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lb1.rules").write_text(S.replace("rr", "rr --ops") + R + S.replace(":80", ":81").replace("rr", "fancy") + R.replace(":80", ":81").replace("-w 1", "-w 70000"))
    result = run("import", "lb1.rules", "--director", "lb1=192.0.2.2/24", "-o", "cluster.json")
    assert result.exit_code == 1
    assert [line.split(": ", 1)[0] for line in result.stderr.splitlines()] == ["lb1.rules:1", "lb1.rules:3", "lb1.rules:4", "lvsgen"]


def test_a_vip_on_two_directors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lb1.rules").write_text(S + R)
    (tmp_path / "lb2.rules").write_text(S.replace(":80", ":81") + R.replace(":80", ":81"))
    result = run("import", "lb1.rules", "lb2.rules", "--director", "lb1=192.0.2.2/24", "--director", "lb2=192.0.2.3/24", "-o", "cluster.json")
    assert result.exit_code == 1
    assert result.stderr == (
        'lb2.rules:1: 192.0.2.100 is already a VIP of director "lb1" (lb1.rules:1): a VIP has one director in a cluster file\n'
        "lvsgen: import: nothing was written\n"
    )
    assert not (tmp_path / "cluster.json").exists()


# --- usage -----------------------------------------------------------------------------------
LB1 = ROOT / "tests/cases/shop/expected/lb1/etc/lvsgen/ipvsadm.rules"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            [f"lb1={LB1}"],
            "lvsgen: import: director \"lb1\" needs its own address: give --director lb1=ADDRESS/PREFIX[@INTERFACE], the address it has on the interface facing the VIP network "
            "(like --director lb1=192.0.2.2/24@eth0; the interface is eth0 when left out)",
            id="no-director",
        ),
        pytest.param([f"lb1={LB1}", "--director", "lb1"], "lvsgen: import: --director lb1: write --director NAME=ADDRESS/PREFIX[@INTERFACE], like --director lb1=192.0.2.2/24@eth0", id="bad-spec"),
        pytest.param(
            [f"lb1={LB1}", "--director", "lb1=192.0.2.2/24", "--director", "lb2=192.0.2.3/24"],
            'lvsgen: import: --director lb2=192.0.2.3/24: no table for director "lb2"; the tables are for lb1',
            id="unknown-director",
        ),
        pytest.param(["-", "--director", "lb1=192.0.2.2/24"], "lvsgen: import: standard input needs a director name: write NAME=-, like lb1=-", id="stdin-unnamed"),
        pytest.param(
            ["Saved.rules", "--director", "lb1=192.0.2.2/24"],
            "lvsgen: import: cannot tell the director's name from the file name \"Saved.rules\": its name up to the first dot must be a lowercase DNS label (like lb1 in lb1.rules); write NAME=Saved.rules, like lb1=Saved.rules",
            id="unnamed-file",
        ),
        pytest.param(
            [f"lb1={LB1}", f"lb1={LB1}", "--director", "lb1=192.0.2.2/24"],
            f'lvsgen: import: {LB1} and {LB1} are both director "lb1": give each director one table, naming them with NAME=PATH where the file names clash',
            id="same-director-twice",
        ),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("import", *args, "-o", str(tmp_path / "cluster.json"))
    assert (result.exit_code, result.stderr) == (2, message + "\n")
    assert not (tmp_path / "cluster.json").exists()


def test_a_bad_director_address_names_the_option(tmp_path: Path) -> None:
    result = run("import", f"lb1={LB1}", "--director", "lb1=192.0.2.2/33@eth0", "-o", str(tmp_path / "c.json"))
    assert result.exit_code == 1
    assert result.stderr == (
        'lvsgen: import: --director lb1=192.0.2.2/33@eth0: "192.0.2.2/33" is not an address with a prefix length; write it as on the interface, like 192.0.2.10/24 or 2001:db8::10/64\n'
        "lvsgen: import: nothing was written\n"
    )


def test_the_file_name_names_the_director_and_stdin_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lb1.ipvsadm.txt").write_bytes(LB1.read_bytes())
    result = run("import", "lb1.ipvsadm.txt", "--director", "lb1=192.0.2.2/24", "-o", "shop.json")
    assert result.exit_code == 0, result.stderr
    from_file = json.loads((tmp_path / "shop.json").read_text())
    assert from_file["cluster"] == "shop" and list(from_file["hosts"]) == ["lb1"]
    result = run("import", "lb1=-", "--director", "lb1=192.0.2.2/24", "--name", "shop", "-o", "-", stdin=LB1.read_text())
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == from_file


def test_an_existing_output_is_replaced_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    out.write_text("mine\n")
    args = ["import", f"lb1={LB1}", "--director", "lb1=192.0.2.2/24", "-o", str(out)]
    result = run(*args)
    assert (result.exit_code, result.stderr) == (1, f"lvsgen: import: {out} exists; give --force to replace it, or another -o\nlvsgen: import: nothing was written\n")
    assert out.read_text() == "mine\n"
    assert run(*args, "--force").exit_code == 0
    assert json.loads(out.read_text())["cluster"] == "cluster"
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.json"], "no temporary file left"


def test_import_twice_gives_the_same_bytes_through_the_real_cli(tmp_path: Path) -> None:
    args = ["import", f"lb1={LB1}", "--director", "lb1=192.0.2.2/24@eth0", "-o", "-"]
    first, second = lvsgen(*args), lvsgen(*args)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == second.stdout
