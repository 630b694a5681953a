"""Property tests: drawn clusters build, every file they build parses and lints, no input makes
lvsgen crash, and a build that fails halfway leaves the previous tree as it was.

Four sources of inputs:
- clusters drawn by a strategy that knows the rules (`_clusters`): most of them are valid by
  construction and must build; the rest carry one known mistake and must be rejected with a
  message that names its JSON path. The test asserts the share that built, so a generator
  that drifts into drawing only invalid documents fails instead of passing in silence;
- documents drawn from the schema itself (hypothesis-jsonschema): these almost never pass
  the semantic checks, so they reach the error paths, not the generator;
- the examples with one value replaced by arbitrary JSON: every error path;
- a rebuild into an existing tree with a fault injected into the n-th write, rename or mkdir.

Every build goes through the real CLI (typer's CliRunner on lvsgen.cli.app), the code path
users hit, with its exit codes and messages.
"""

from __future__ import annotations

import copy
import errno
import gzip
import hashlib
import ipaddress
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from typer.testing import CliRunner

from lvsgen import cli, pipeline, writer
from lvsgen.files import MANIFEST, File
from lvsgen.schema import load_schema

from cases import ROOT, tree

EXAMPLES = [ROOT / "examples/seed-dr.json", ROOT / "examples/cluster.json", ROOT / "tests/cases/mixed/cluster.json"]
SCHEMA = load_schema()
_DEFS = SCHEMA["$defs"]
# Names lvsgen gives its temporary and backup files; none may outlive a build.
LEFTOVER = re.compile(r"lvsgen-(tmp|old)")


# --- running the CLI ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def build(src: Path, out: Path) -> Run:
    """`lvsgen build SRC -o OUT`, in process, through the CLI users run. An exception that
    escapes the CLI (a traceback a user would see) fails the test here."""
    result = CliRunner(env={"LVSGEN_DEBUG": None}).invoke(cli.app, ["build", str(src), "-o", str(out)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"lvsgen build let an exception through: {result.exception!r}") from result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def assert_rejected(run: Run, src: Path, expected_path: str | None = None) -> None:
    """Exit 1; one `FILE::$.path: message` line per problem, then the count; no traceback."""
    assert run.code == 1, run
    assert run.stdout == ""
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    *problems, last = run.stderr.splitlines()
    assert problems, run.stderr
    count = len(problems)
    assert last == f"lvsgen: {src}: {count} problem{'s' if count != 1 else ''}; nothing was written", run.stderr
    for line in problems:  # FILE::$.json.path: ..., or FILE:line:col: ... for JSON syntax
        assert line.startswith(f"{src}::$") or re.match(rf"{re.escape(str(src))}(:\d+:\d+)?: ", line), line
    if expected_path is not None:
        # The problem is at the path or below it: $.vips.www.services[0] or ...[0].port
        wanted = f"{src}::{expected_path}"
        assert any(line.startswith(wanted) and line[len(wanted)] in ":.[" for line in problems), (
            f"no problem names {expected_path}:\n{run.stderr}"
        )


def snapshot(folder: Path) -> dict[str, tuple[str, bytes, int]]:
    """Every entry below folder, folders and links included: path -> (kind, content, mode)."""
    out: dict[str, tuple[str, bytes, int]] = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        st_ = path.lstat()
        if stat.S_ISDIR(st_.st_mode):
            entry = ("dir", b"", stat.S_IMODE(st_.st_mode))
        elif stat.S_ISLNK(st_.st_mode):
            entry = ("link", os.readlink(path).encode(), 0)
        else:
            entry = ("file", path.read_bytes(), stat.S_IMODE(st_.st_mode))
        out[path.relative_to(folder).as_posix()] = entry
    return out


def json_path(*parts: str | int) -> str:
    """A JSON path as the README spells it: $.vips.www.services[0], $.hosts["x-1"]."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --- drawing clusters that follow the rules ---------------------------------------------------
# Documentation networks only (RFC 5737, RFC 3849), cut so that hosts share some of them and
# not others: DR needs the director's network, NAT one of its networks, TUN any IPv4 one.
NETS4 = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/26", "203.0.113.64/27"))
NETS6 = tuple(ipaddress.ip_network(n) for n in ("2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:a::/48"))
INTERFACES = ["eth0", "ens3", "eth0.100", "bond0", "enp0s31f6", "ens3.42", "e_1", "wan-0"]
NAT_INTERFACES = ["eth1", "ens4", "eth1.200", "lan_1"]
SCHEDULERS = _DEFS["service"]["properties"]["scheduler"]["enum"]
IPVS_KNOBS = ["expire_nodest_conn", "expire_quiescent_template", "conn_reuse_mode", "sloppy_tcp", "schedule_icmp"]


@dataclass
class Net:
    """A host's address on one network, for the strategy's bookkeeping."""

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    net: ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Drawn:
    document: dict[str, Any]
    broken: str | None  # None: valid by construction; else the JSON path of the one mistake


class _Pool:
    """Unique addresses: no host, VIP or bare real server shares one by accident."""

    def __init__(self) -> None:
        self.used: set[Any] = set()

    def take(self, draw: st.DrawFn, net: Any) -> Any:
        last = min(net.num_addresses - 2, 5000)
        offset = draw(st.integers(1, last))
        while net[offset] in self.used:
            offset = offset % last + 1
        self.used.add(net[offset])
        return net[offset]


def _text(draw: st.DrawFn, address: Any) -> str:
    """IPv6 sometimes in its long form: lvsgen must print the RFC 5952 one either way."""
    if address.version == 6 and draw(st.integers(0, 3)) == 0:
        return address.exploded.upper() if draw(st.booleans()) else address.exploded
    return str(address)


def _names(draw: st.DrawFn, prefixes: list[str], count: int) -> list[str]:
    prefix = draw(st.sampled_from(prefixes))
    return [f"{prefix}{i + 1}" for i in range(count)]


@st.composite
def _valid(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cluster that breaks no rule, and which hosts are directors and real servers."""
    pool = _Pool()
    hosts: dict[str, Any] = {}
    nets: dict[str, list[Net]] = {}  # host -> its networks (front first, then NAT)
    directors = _names(draw, ["lb", "dir", "edge-", "d"], draw(st.integers(1, 3)))
    for name in directors:
        family = draw(st.sampled_from([4, 4, 4, 6]))
        front = draw(st.sampled_from(NETS4 if family == 4 else NETS6))
        ip = pool.take(draw, front)
        iface = draw(st.sampled_from(INTERFACES))
        host: dict[str, Any] = {"role": "director", "interface": iface, "address": f"{_text(draw, ip)}/{front.prefixlen}"}
        nets[name] = [Net(ip, front)]
        if draw(st.integers(0, 2)) == 0:
            nat_net = draw(st.sampled_from([n for n in (NETS4 if family == 4 else NETS6) if n != front]))
            nat_ip = pool.take(draw, nat_net)
            host["nat_address"] = f"{_text(draw, nat_ip)}/{nat_net.prefixlen}"
            if draw(st.integers(0, 3)):
                host["nat_interface"] = draw(st.sampled_from(NAT_INTERFACES))
            nets[name].append(Net(nat_ip, nat_net))
        optional = {
            "hostname": st.just(f"{name}.example.net"),
            "network_file": st.just(f"10-{iface}.network"),
            "own_interface": st.sampled_from([{"dhcp": "yes"}, {"dhcp": "ipv4", "dns": ["192.0.2.53", "2001:db8::53"]}]),
            "owns_ipvs_table": st.booleans(),
            "nat_forwarding": st.sampled_from(["lvs-only", "host"]),
            "drain_timeout": st.integers(0, 86400),
            "ipvs_sysctls": st.dictionaries(st.sampled_from(IPVS_KNOBS), st.integers(0, 2147483647), max_size=3),
        }
        for key, strategy in optional.items():
            if draw(st.integers(0, 3)) == 0:
                host[key] = draw(strategy)
        if "network_file" in host:  # the two exclude each other (a break below tries both)
            host.pop("own_interface", None)
        hosts[name] = host
    # Real servers mostly on the directors' networks, sometimes on one of their own (TUN).
    home = [n.net for name in directors for n in nets[name]]
    reals = _names(draw, ["rs", "web", "app-", "n", "r" * 60], draw(st.integers(0, 6)))
    for name in reals:
        net = draw(st.sampled_from(home + home + list(NETS4 + NETS6)))
        ip = pool.take(draw, net)
        iface = draw(st.sampled_from(INTERFACES))
        host = {"role": "real-server", "interface": iface, "address": f"{_text(draw, ip)}/{net.prefixlen}"}
        for key, strategy in {
            "hostname": st.just(f"{name}.example.net"),
            "network_file": st.just(f"20-{iface}.network"),
            "own_interface": st.just({"dhcp": "yes"}),
            "vip_device": st.sampled_from(["dummy", "lo"]),
        }.items():
            if draw(st.integers(0, 3)) == 0:
                host[key] = draw(strategy)
        if "network_file" in host:
            host.pop("own_interface", None)
        hosts[name] = host
        nets[name] = [Net(ip, net)]

    vips: dict[str, Any] = {}
    marks: set[tuple[str, int, int]] = set()  # (director, family, mark): unique
    for vname in _names(draw, ["www", "api", "v", "x-1-"], draw(st.integers(1, 4))):
        director = draw(st.sampled_from(directors))
        front = nets[director][0].net
        family = front.version
        on_front = draw(st.integers(0, 3)) > 0
        vip_net = front if on_front else draw(st.sampled_from(NETS4 if family == 4 else NETS6))
        vip_ip = pool.take(draw, vip_net)
        services = []
        taken: set[tuple[str, int]] = set()
        for _ in range(draw(st.integers(1, 3))):
            protocol = draw(st.sampled_from(["tcp", "tcp", "udp", "sctp"]))
            port = draw(st.sampled_from([80, 443, 53, 8080, 3868, 1, 65535]) | st.integers(1, 65535))
            while (protocol, port) in taken:
                port = port % 65535 + 1
            taken.add((protocol, port))
            forwarding = draw(st.sampled_from(["dr", "nat", "tun"] if family == 4 else ["dr", "nat"]))
            director_nets = [n.net for n in nets[director] if n.net.version == family]
            if forwarding == "dr":
                reachable = [front]
            elif forwarding == "nat":
                reachable = director_nets
            else:
                reachable = list(NETS4)
            eligible = [r for r in reals if any(nets[r][0].ip in net for net in reachable)]
            chosen = draw(st.lists(st.sampled_from(eligible), unique=True, max_size=4)) if eligible else []
            entries: list[dict[str, Any]] = [{"host": r} for r in chosen]
            for _ in range(draw(st.integers(0 if chosen else 1, 2))):
                entries.append({"address": _text(draw, pool.take(draw, draw(st.sampled_from(reachable))))})
            if draw(st.integers(0, 5)) == 0:
                entries.append({"host": director, "localnode": True})
            for entry in entries:
                if draw(st.integers(0, 2)) == 0:
                    entry["weight"] = draw(st.integers(0, 65535))
                if forwarding == "nat" and draw(st.integers(0, 2)) == 0:
                    entry["port"] = draw(st.integers(1, 65535))
                elif draw(st.integers(0, 7)) == 0:
                    entry["port"] = port  # allowed under dr and tun: it is no remapping
            entries = draw(st.permutations(entries))
            service: dict[str, Any] = {"port": port, "forwarding": forwarding, "real_servers": entries}
            if draw(st.integers(0, 4)) == 0:
                # A firewall-mark service: its ports instead of the port, a mark of its own.
                mark = draw(st.sampled_from([1, 2, 7, (1 << 31) - 1]) | st.integers(1, (1 << 31) - 1))
                while (director, family, mark) in marks:
                    mark = mark % ((1 << 31) - 1) + 1
                marks.add((director, family, mark))
                ports: list[Any] = [port]
                for _ in range(draw(st.integers(0, 2))):
                    first = draw(st.integers(1, 65535))
                    last = min(65535, first + draw(st.sampled_from([0, 1, 9, 99])))
                    if all((protocol, p) not in taken for p in range(first, last + 1)):
                        taken.update((protocol, p) for p in range(first, last + 1))
                        ports.append(first if first == last else f"{first}-{last}")
                del service["port"]
                service.update({"fwmark": mark, "ports": draw(st.permutations(ports))})
                if forwarding != "nat":
                    for entry in entries:
                        entry.pop("port", None)
            if protocol != "tcp" or draw(st.booleans()):
                service["protocol"] = protocol
            if draw(st.booleans()):
                service["scheduler"] = draw(st.sampled_from(SCHEDULERS))
            if service.get("scheduler") in ("sh", "mh") and draw(st.booleans()):
                flags = [f"{service['scheduler']}-fallback", f"{service['scheduler']}-port"]
                service["scheduler_flags"] = draw(st.lists(st.sampled_from(flags), unique=True, min_size=1))
            if protocol == "udp" and draw(st.integers(0, 2)) == 0:
                service["one_packet"] = True
            if forwarding == "tun" and draw(st.booleans()):
                kind = draw(st.sampled_from(["ipip", "gue", "gre"]))
                tunnel: dict[str, Any] = {"type": kind}
                if kind == "gue":
                    tunnel["port"] = draw(st.integers(1, 65535))
                if kind != "ipip" and draw(st.booleans()):
                    tunnel["checksum"] = draw(st.sampled_from(["none", "csum", "remcsum"] if kind == "gue" else ["none"]))
                service["tunnel"] = tunnel
            if draw(st.integers(0, 2)) == 0:
                persistence: dict[str, Any] = {"timeout": draw(st.integers(1, 2678400))}
                if draw(st.booleans()):
                    persistence["granularity"] = draw(st.integers(1, 32 if family == 4 else 128))
                if protocol == "udp" and draw(st.booleans()):
                    persistence["engine"] = "sip"
                service["persistence"] = persistence
            services.append(service)
        vips[vname] = {"address": _text(draw, vip_ip), "director": director, "services": services}

    # A GUE port is never a UDP port a real server serves (semantic.py): move a colliding one.
    udp: set[int] = set()
    for vip in vips.values():
        for svc in vip["services"]:
            if svc.get("protocol") == "udp":
                spans = [(p, p) if isinstance(p, int) else tuple(map(int, p.split("-"))) for p in svc.get("ports", [])]
                for first, last in spans:
                    udp.update(range(first, last + 1))
                if "port" in svc:
                    udp.add(svc["port"])
                udp.update(rs["port"] for rs in svc["real_servers"] if "port" in rs)
    for vip in vips.values():
        for svc in vip["services"]:
            tunnel = svc.get("tunnel", {})
            while tunnel.get("port") in udp:
                tunnel["port"] = tunnel["port"] % 65535 + 1
    document: dict[str, Any] = {"cluster": draw(st.sampled_from(["prop", "shop", "c-1", "x" * 63])), "hosts": hosts, "vips": vips}
    if draw(st.booleans()):
        document = {"$schema": "../schemas/cluster.schema.json", **document}
    return document, {"directors": directors, "reals": reals}


# One known mistake each. A function changes the document and returns the JSON path a
# problem must name, or, changing nothing, None when the document has no place for it.
Break = Callable[[st.DrawFn, dict[str, Any], dict[str, Any]], "str | None"]


def _any_service(draw: st.DrawFn, doc: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    vname = draw(st.sampled_from(sorted(doc["vips"])))
    index = draw(st.integers(0, len(doc["vips"][vname]["services"]) - 1))
    return vname, index, doc["vips"][vname]["services"][index]


def _unknown_director(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname = draw(st.sampled_from(sorted(doc["vips"])))
    doc["vips"][vname]["director"] = "ghost"
    return json_path("vips", vname, "director")


def _unknown_real_server(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    svc["real_servers"].append({"host": "ghost"})
    return json_path("vips", vname, "services", index, "real_servers", len(svc["real_servers"]) - 1, "host")


def _bad_scheduler(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    svc["scheduler"] = draw(st.sampled_from(["nope", "RR", "", "wlc "]))
    return json_path("vips", vname, "services", index, "scheduler")


def _no_forwarding(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    del svc["forwarding"]
    return json_path("vips", vname, "services", index)


def _service_twice(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    services = doc["vips"][vname]["services"]
    services.append(copy.deepcopy(svc))
    return json_path("vips", vname, "services", len(services) - 1)


def _port_remap(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    svc["forwarding"] = draw(st.sampled_from(["dr", "tun"]))
    svc["real_servers"][0]["port"] = svc.get("port", 80) % 65535 + 1
    return json_path("vips", vname, "services", index, "real_servers", 0, "port")


def _vip_is_a_host(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname = draw(st.sampled_from(sorted(doc["vips"])))
    host = draw(st.sampled_from(sorted(doc["hosts"])))
    doc["vips"][vname]["address"] = doc["hosts"][host]["address"].split("/")[0]
    return json_path("vips", vname, "address")


def _director_option_on_real_server(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str | None:
    if not notes["reals"]:
        return None
    name = draw(st.sampled_from(notes["reals"]))
    key = draw(st.sampled_from(["drain_timeout", "owns_ipvs_table", "ipvs_sysctls", "nat_address"]))
    doc["hosts"][name][key] = {"drain_timeout": 5, "owns_ipvs_table": False, "ipvs_sysctls": {}, "nat_address": "192.0.2.254/24"}[key]
    return json_path("hosts", name, key)


def _vip_device_on_director(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(notes["directors"]))
    doc["hosts"][name]["vip_device"] = "lo"
    return json_path("hosts", name, "vip_device")


def _host_prefix_too_long(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(sorted(doc["hosts"])))
    ip = doc["hosts"][name]["address"].split("/")[0]
    doc["hosts"][name]["address"] = f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}"
    return json_path("hosts", name, "address")


def _bad_address(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(sorted(doc["hosts"])))
    doc["hosts"][name]["address"] = draw(st.sampled_from(["192.0.2.300/24", "192.0.2.1", "2001:db8::g/64", "192.0.2.1/24 ", "fe80::1%eth0/64"]))
    return json_path("hosts", name, "address")


def _same_address_twice(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str | None:
    if len(doc["hosts"]) < 2:
        return None
    first, second = sorted(draw(st.lists(st.sampled_from(sorted(doc["hosts"])), min_size=2, max_size=2, unique=True)))
    doc["hosts"][second]["address"] = doc["hosts"][first]["address"]
    return json_path("hosts", second, "address")


def _tun_on_ipv6(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str | None:
    v6 = sorted(n for n, v in doc["vips"].items() if ":" in v["address"])
    if not v6:
        return None
    vname = draw(st.sampled_from(v6))
    index = draw(st.integers(0, len(doc["vips"][vname]["services"]) - 1))
    doc["vips"][vname]["services"][index]["forwarding"] = "tun"
    return json_path("vips", vname, "services", index, "forwarding")


def _interface_lvsgen_uses(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(sorted(doc["hosts"])))
    doc["hosts"][name]["interface"] = draw(st.sampled_from(["lo", "lvs0", "tunl0"]))
    return json_path("hosts", name, "interface")


def _weight_out_of_range(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    svc["real_servers"][-1]["weight"] = draw(st.sampled_from([-1, 65536, "1", 1.5]))
    return json_path("vips", vname, "services", index, "real_servers", len(svc["real_servers"]) - 1, "weight")


def _granularity_too_long(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    svc["persistence"] = {"timeout": 60, "granularity": 129 if ":" in doc["vips"][vname]["address"] else draw(st.integers(33, 129))}
    return json_path("vips", vname, "services", index, "persistence", "granularity")


def _unknown_property(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(sorted(doc["hosts"])))
    doc["hosts"][name]["colour"] = "blue"
    return json_path("hosts", name)


def _bad_name(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    bad = draw(st.sampled_from(["Web", "a_b", "-x", "x-", "a b", "é", "../etc", "a" * 64]))
    vname = sorted(doc["vips"])[0]
    doc["vips"][bad] = doc["vips"].pop(vname)
    return "$.vips"


def _off_network_dr(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    vname, index, svc = _any_service(draw, doc)
    director = doc["hosts"][doc["vips"][vname]["director"]]
    front = ipaddress.ip_interface(director["address"]).network
    stranger = next(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "203.0.113.0/26", "2001:db8:1::/64", "2001:db8:2::/64") if ipaddress.ip_network(n).version == front.version and not ipaddress.ip_network(n).overlaps(front))
    svc["forwarding"] = "dr"
    svc["real_servers"].append({"address": str(stranger[7])})
    return json_path("vips", vname, "services", index, "real_servers", len(svc["real_servers"]) - 1)


def _own_interface_without_route(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(sorted(doc["hosts"])))
    host = doc["hosts"][name]
    host.pop("network_file", None)
    host["own_interface"] = draw(st.sampled_from([{}, {"dhcp": "no"}, {"dns": ["192.0.2.53"]}]))
    return json_path("hosts", name, "own_interface")


def _own_interface_and_network_file(draw: st.DrawFn, doc: dict[str, Any], notes: dict[str, Any]) -> str:
    name = draw(st.sampled_from(sorted(doc["hosts"])))
    doc["hosts"][name]["own_interface"] = {"dhcp": "yes"}
    doc["hosts"][name]["network_file"] = "10-x.network"
    return json_path("hosts", name, "own_interface")


BREAKS: list[Break] = [
    _unknown_director, _unknown_real_server, _bad_scheduler, _no_forwarding, _service_twice, _port_remap,
    _vip_is_a_host, _director_option_on_real_server, _vip_device_on_director, _host_prefix_too_long,
    _bad_address, _same_address_twice, _tun_on_ipv6, _interface_lvsgen_uses, _weight_out_of_range,
    _granularity_too_long, _unknown_property, _bad_name, _off_network_dr,
    _own_interface_without_route, _own_interface_and_network_file,
]


@st.composite
def _clusters(draw: st.DrawFn) -> Drawn:
    """Most valid by construction; about one in three with one known mistake (all three
    booleans False: hypothesis leans towards False)."""
    document, notes = draw(_valid())
    if any(draw(st.booleans()) for _ in range(3)):
        return Drawn(document, None)
    for mistake in draw(st.permutations(BREAKS)):
        where = mistake(draw, document, notes)
        if where is not None:  # else this document has no place for that mistake
            event(f"mistake: {mistake.__name__}")
            return Drawn(document, where)
    raise AssertionError("some mistake fits every document")


# --- what a built tree must look like ---------------------------------------------------------
_SYSCTL = re.compile(r"[a-z0-9_./-]+ = -?[0-9]+")
_RULE = re.compile(r"-[Aa] (-t|-u|--sctp-service|-f) \S+ .*")
_INI_KEY = re.compile(r"[A-Z][A-Za-z0-9]*=.*")
_SECTION = re.compile(r"\[[A-Z][A-Za-z]*\]")
_MODULE = re.compile(r"[a-z0-9_]+")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way; C is faster


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("#", ";"))]


def _check_ini(name: str, text: str) -> None:
    """networkd and systemd units: [Section] headers, then Key=Value lines."""
    lines = _lines(text)
    assert lines and _SECTION.fullmatch(lines[0]), f"{name}: no [Section] first"
    for line in lines:
        assert _SECTION.fullmatch(line) or _INI_KEY.fullmatch(line), f"{name}: {line!r}"
    sections = [line for line in lines if _SECTION.fullmatch(line)]
    if name.endswith(".network"):
        assert "[Match]" in sections and any(line.startswith("Name=") for line in lines), name
    if name.endswith(".netdev"):
        assert "[NetDev]" in sections and any(line.startswith("Kind=") for line in lines), name


def _check_cloud_init(host: Path, text: str) -> None:
    """#cloud-config user-data that installs exactly the host folder, byte for byte."""
    assert text.startswith("#cloud-config\n")
    doc = yaml.load(text, Loader=_YAML_LOADER)
    assert len(doc["runcmd"]) == 1 and doc["runcmd"][0][:2] == ["bash", "-c"]
    assert doc["runcmd"][0][2].startswith("bash /var/lib/lvsgen/host/setup.sh || ")
    assert isinstance(doc["hostname"], str) and "." not in doc["hostname"]
    written = {f["path"]: f for f in doc["write_files"]}
    files = {p.relative_to(host).as_posix(): p for p in host.rglob("*") if p.is_file()}
    expected = {f"/var/lib/lvsgen/host/{rel}": p for rel, p in files.items() if rel not in ("cloud-init.yaml.gz", ".lvsgen-manifest")}
    assert sorted(written) == sorted(expected), host
    for path, src in expected.items():
        assert written[path]["content"] == src.read_text(), path
        assert written[path]["permissions"] == f"{src.stat().st_mode & 0o777:04o}", path


def _services_of(document: dict[str, Any], director: str) -> tuple[int, int]:
    """From the input: how many services a director holds, and how many real-server entries."""
    services = [svc for vip in document["vips"].values() if vip["director"] == director for svc in vip["services"]]
    return len(services), sum(len(svc["real_servers"]) for svc in services)


Scripts = dict[str, tuple[str, bytes]]  # content hash -> (role or "library", bytes)


def check_tree(out: Path, document: dict[str, Any], scripts: Scripts) -> None:
    """Every file of every host parses by its kind; scripts are collected (by content hash)
    for one bash -n and one shellcheck pass at the end."""
    assert sorted(p.name for p in out.iterdir()) == sorted(document["hosts"]), "one folder per host, no more"
    for host in sorted(out.iterdir()):
        files = {p.relative_to(host).as_posix(): p for p in sorted(host.rglob("*")) if not p.is_dir()}
        assert not [n for n in files if LEFTOVER.search(n)], f"temporary files left in {host}"
        assert all(any(d.iterdir()) for d in host.rglob("*") if d.is_dir()), f"an empty folder left in {host}"
        manifest = files.pop(".lvsgen-manifest").read_text()
        assert sorted(_lines(manifest)) == sorted(files), f"{host}: the manifest lists other files than the folder has"
        role = document["hosts"][host.name]["role"]
        director = role == "director"
        assert ("etc/lvsgen/ipvsadm.rules" in files) == director
        assert "etc/systemd/system/lvsgen.service" in files  # every host, every network stack
        for name, path in files.items():
            data = path.read_bytes()
            if name == "cloud-init.yaml.gz":
                data = gzip.decompress(data)
            text = data.decode("utf-8")
            mode = path.stat().st_mode & 0o777
            assert mode == (0o755 if name == "setup.sh" else 0o644), f"{path}: mode {mode:o}"
            if name in ("setup.sh", "lvsgen.sh"):
                if name == "setup.sh":
                    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text, path
                scripts.setdefault(hashlib.sha256(data).hexdigest(), (role if name == "setup.sh" else "library", data))
            elif name == "cloud-init.yaml.gz":
                _check_cloud_init(host, text)
            elif name.endswith(".json"):  # none today; a JSON artifact must parse
                json.loads(text)
            elif name.startswith("etc/sysctl.d/"):
                for line in _lines(text):
                    assert _SYSCTL.fullmatch(line), f"{path}: {line!r}"
            elif name.startswith("etc/modules-load.d/"):
                assert all(_MODULE.fullmatch(line) for line in _lines(text)), path
            elif name == "etc/lvsgen/ipvsadm.rules":
                lines = text.splitlines()
                assert all(_RULE.fullmatch(line) for line in lines), path
                services, entries = _services_of(document, host.name)
                assert [line[:2] for line in lines].count("-A") == services, path
                assert [line[:2] for line in lines].count("-a") == entries, path
            elif name == "ipvsadm.proc":
                # The rules file as /proc shows it: made from that very file, line for line.
                rules = files["etc/lvsgen/ipvsadm.rules"].read_bytes()
                head, *body = text.splitlines()
                assert head.startswith("# ") and head.endswith(" rules md5 " + hashlib.md5(rules).hexdigest()), path
                assert [b.split("\t")[1] for b in body] == rules.decode().splitlines(), path
                assert all(len(b.split("\t")) == (3 if b.split("\t")[1].startswith("-A ") else 2) for b in body), path
            elif name.startswith(("etc/systemd/network/", "etc/systemd/system/")):
                _check_ini(name, text)
            elif name == "etc/lvsgen/lvsgen.nft":
                _check_nft(path, text, document, host.name)
            else:
                raise AssertionError(f"{path}: no parser for this kind of file; add one to check_tree")


def _check_nft(path: Path, text: str, document: dict[str, Any], director: str) -> None:
    """A director's table inet lvsgen: a NAT forwarding policy with one element per distinct
    NAT real server and port, counted from the input (ports of firewall-mark services as
    ranges), one mark rule per firewall-mark service, and nft's own checker (-c loads
    nothing) accepts it."""
    policy = document["hosts"][director].get("nat_forwarding", "lvs-only") == "lvs-only"
    replies = set()
    marks = 0
    plain = True  # every NAT element is one port, so the elements can be counted
    for vip in document["vips"].values():
        if vip["director"] != director:
            continue
        for svc in vip["services"]:
            marks += "fwmark" in svc
            if svc["forwarding"] == "nat":
                for rs in svc["real_servers"]:
                    address = (ipaddress.ip_interface(document["hosts"][rs["host"]]["address"]).ip if "host" in rs
                               else ipaddress.ip_address(rs["address"]))
                    if "fwmark" in svc and "port" not in rs:
                        plain = False
                    replies.add((svc.get("protocol", "tcp"), address, rs.get("port", svc.get("port"))))
    assert marks or (policy and replies), f"{path}: a table for a director without NAT services or marks"
    assert len(re.findall(r"meta mark set \d+$", text, re.M)) == marks, path
    if policy and replies:
        elements = re.findall(r"^\t\t\t(tcp|udp|sctp) \. \S+ \. \d+(-\d+)?,$", text, re.M)
        if plain:
            assert len(elements) == len(replies), path
        assert "type filter hook forward priority filter; policy drop;" in text, path
    else:
        assert "hook forward" not in text, path
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if Path(nft).exists():
        run = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{path}: {run.stderr}"


def lint_scripts(scripts: Scripts, folder: Path) -> None:
    """bash -n on every distinct script, then shellcheck over all of them in one process.

    setup.sh sources lvsgen.sh, and shellcheck following that source reads the 1,000-line
    library again for every script (some 0.7 s each). So every script is checked on its
    own, with the two findings that only say the library was not read turned off (SC1091
    "not following", SC2034 "appears unused": the library uses them), and the library is
    checked once; then the largest director and real-server setup.sh are checked with the
    library followed, as on a host.
    """
    folder.mkdir()
    paths = []
    for digest, (_, data) in sorted(scripts.items()):
        paths.append(folder / f"{digest[:16]}.sh")
        paths[-1].write_bytes(data)
    names = b"".join(bytes(p) + b"\0" for p in paths)
    syntax = subprocess.run(["xargs", "-0", "-n1", "-P2", "bash", "-n"], input=names, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr.decode()
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not found: apt-get install shellcheck")
    base = ["shellcheck", "--severity=style", "--shell=bash"]
    run = subprocess.run([*base, "--exclude=SC1091,SC2034", *map(str, paths)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    by_role: dict[str, list[bytes]] = {}
    for role, data in scripts.values():
        by_role.setdefault(role, []).append(data)
    assert len(by_role["library"]) == 1, "lvsgen.sh must be the same on every host"
    pair = folder / "pair"
    pair.mkdir()
    (pair / "lvsgen.sh").write_bytes(by_role.pop("library")[0])
    for role, datas in by_role.items():
        (pair / f"{role}.sh").write_bytes(max(datas, key=len))
    assert sorted(by_role) == ["director", "real-server"]
    run = subprocess.run([*base, "--external-sources", "director.sh", "real-server.sh"], capture_output=True, text=True, cwd=pair)
    assert run.returncode == 0, run.stdout + run.stderr


DRAWN = 400  # examples: some 280 of them build, and some 100 trees are built under them


def test_drawn_clusters_build_and_lint(tmp_path: Path) -> None:
    """Hundreds of drawn clusters through `lvsgen build`: the valid ones build (and a real
    share of all of them does), each into a fresh folder or over the tree of another drawn
    cluster; the invalid ones are rejected, naming the path of their mistake, and leave the
    folder as it was. Every built file parses; every script passes bash -n and shellcheck."""
    counts: Counter[str] = Counter()
    scripts: Scripts = {}
    work = tmp_path / "work"
    work.mkdir()

    @settings(max_examples=DRAWN, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(drawn=_clusters(), previous=st.none() | st.none() | _valid())
    def one(drawn: Drawn, previous: tuple[dict[str, Any], dict[str, Any]] | None) -> None:
        folder = Path(tempfile.mkdtemp(dir=work))
        try:
            src, out = folder / "cluster.json", folder / "out"
            if previous is not None:
                src.write_text(json.dumps(previous[0]))
                run = build(src, out)
                assert (run.code, run.stdout, run.stderr) == (0, "", ""), run
                counts["trees"] += 1
            before = snapshot(out)
            src.write_text(json.dumps(drawn.document, indent=1))
            run = build(src, out)
            counts["drawn"] += 1
            if drawn.broken is None:
                assert (run.code, run.stdout, run.stderr) == (0, "", ""), f"a valid cluster was rejected:\n{run.stderr}"
                counts["built"] += 1
                counts["trees"] += 1
                counts["scripts"] += 2 * len(drawn.document["hosts"])
                check_tree(out, drawn.document, scripts)
            else:
                assert_rejected(run, src, drawn.broken)
                assert snapshot(out) == before, "a rejected input changed the output folder"
        finally:
            shutil.rmtree(folder)

    one()
    share = counts["built"] / counts["drawn"]
    print(f"\ndrawn {counts['drawn']}, built {counts['built']} ({share:.0%}), trees {counts['trees']}, scripts {counts['scripts']} ({len(scripts)} distinct)")
    assert share >= 0.25, f"only {counts['built']} of {counts['drawn']} drawn clusters built: the generator is barely exercised"
    assert counts["drawn"] >= DRAWN * 2 // 3, f"hypothesis ran only {counts['drawn']} of {DRAWN} examples"
    assert counts["built"] < counts["drawn"], "no invalid draw at all: the error paths are not exercised"
    lint_scripts(scripts, tmp_path / "scripts")


# --- documents drawn from the schema, and mutated examples: the error paths ------------------
def _attempt(document: Any, tmp: Path) -> bool:
    """True when the document built; False when it was rejected with problems."""
    src = tmp / "cluster.json"
    out = tmp / "out"
    src.write_text(json.dumps(document))
    run = build(src, out)
    if run.code != 0:
        assert_rejected(run, src)
        assert not out.exists()
        return False
    assert (run.stdout, run.stderr) == ("", "")
    plan = pipeline.compile_file(src)
    assert tree(out) == {
        f"{host}/{f.path}": (f.data(), f.mode) for host, files in plan.items() for f in [*files, File(MANIFEST, writer.manifest_text(files), 0o644)]
    }
    return True


# Small address pools, so that generated hosts and real servers share subnets now and then.
_v4 = st.sampled_from(["192.0.2.", "198.51.100."]).flatmap(lambda p: st.integers(1, 254).map(lambda i: f"{p}{i}"))
_v6 = st.integers(1, 0xFFFF).map(lambda i: f"2001:db8::{i:x}")
_addr = st.one_of(_v4, _v4, _v6)
_iface = st.one_of(
    _v4.flatmap(lambda a: st.sampled_from([8, 24, 30, 32]).map(lambda p: f"{a}/{p}")),
    _v6.flatmap(lambda a: st.sampled_from([64, 128]).map(lambda p: f"{a}/{p}")),
)
FORMATS = {"lvsgen-ip-address": _addr, "lvsgen-ip-interface": _iface}


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every #/$defs reference inlined (it has no recursive ones), because
    hypothesis-jsonschema cannot resolve references under a urn: $id."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inlined(defs[node["$ref"].rsplit("/", 1)[1]], defs)
        return {k: _inlined(v, defs) for k, v in node.items() if k not in ("$defs", "$id")}
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    return node


def _leaf(name: str) -> st.SearchStrategy[Any]:
    return from_schema(_inlined(_DEFS[name], _DEFS), custom_formats=FORMATS)


# Drawing whole documents from the schema is very slow (nested propertyNames objects), so
# the levels above the leaves are composed here, with a small pool of names so that
# references resolve now and then. Hosts drawn from the schema alone nearly always break a
# semantic rule, so these documents test the error paths; _clusters tests the generator.
_names_pool = st.sampled_from(["lb", "lb2", "rs1", "rs2", "rs3"])
_real_server = st.one_of(
    st.fixed_dictionaries(
        {"host": _names_pool},
        optional={"weight": st.integers(0, 65535), "port": st.integers(1, 65535), "localnode": st.booleans()},
    ),
    _leaf("real_server"),
)
_service = st.fixed_dictionaries(
    {
        "port": st.sampled_from([53, 80, 443, 8080]),
        "forwarding": st.sampled_from(["dr", "nat", "tun"]),
        "real_servers": st.lists(_real_server, min_size=1, max_size=4),
    },
    optional={
        "protocol": st.sampled_from(["tcp", "udp", "sctp"]),
        "scheduler": st.sampled_from(SCHEDULERS),
        "persistence": from_schema(_inlined(_DEFS["service"]["properties"]["persistence"], _DEFS)),
        "scheduler_flags": from_schema(_DEFS["service"]["properties"]["scheduler_flags"]),
        "one_packet": st.booleans(),
    },
)
_vip = st.fixed_dictionaries({"address": _addr, "director": _names_pool, "services": st.lists(_service, min_size=1, max_size=3)})
_document = st.fixed_dictionaries(
    {
        "cluster": st.just("prop"),
        "hosts": st.dictionaries(_names_pool, _leaf("host"), min_size=1, max_size=5),
        "vips": st.dictionaries(st.sampled_from(["a", "b", "c"]), _vip, min_size=1, max_size=3),
    }
)


@settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(document=_document)
def test_schema_valid_documents_never_crash(document: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = _attempt(document, tmp_path_factory.mktemp("gen"))
    event("built" if built else "rejected")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, prefix + (index,)))
    return out


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.text(max_size=12) | _addr | _iface,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_examples_never_crash(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = json.loads(data.draw(st.sampled_from(EXAMPLES)).read_text())
    document = copy.deepcopy(base)
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(_json)
    _attempt(document, tmp_path_factory.mktemp("mut"))


# --- a rebuild that fails halfway -------------------------------------------------------------
class Fault:
    """Stands in for one os function: counts its calls and makes the n-th fail (or every
    call from the n-th on, for a failure that does not go away)."""

    def __init__(self, real: Callable[..., Any], n: int, error: int, lasting: bool = False):
        self.real, self.n, self.error, self.lasting = real, n, error, lasting
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.n or (self.lasting and self.calls > self.n):
            raise OSError(self.error, os.strerror(self.error))
        return self.real(*args, **kwargs)


def _changed(document: dict[str, Any]) -> dict[str, Any]:
    """examples/cluster.json, changed in every way a rebuild handles: a weight changes (files
    rewritten), rs4 leaves (a host folder removed), rs5 joins (a new folder), rs1 moves its
    VIPs to lo (one unit removed, one added), lb2 gets a network file (a drop-in replaces its
    .network file), and lb1 gets a NAT service (rs2 gets a default route through it)."""
    doc = copy.deepcopy(document)
    del doc["hosts"]["rs4"]
    doc["hosts"]["rs5"] = {"role": "real-server", "interface": "eth0", "address": "192.0.2.15/24"}
    doc["hosts"]["rs1"]["vip_device"] = "lo"
    doc["hosts"]["lb2"]["network_file"] = "10-eth0.network"
    for vip in doc["vips"].values():
        for svc in vip["services"]:
            svc["real_servers"] = [r for r in svc["real_servers"] if r.get("host") != "rs4"] + (
                [{"host": "rs5", "weight": 4}] if svc["port"] == 80 else []
            )
    doc["vips"]["www"]["services"][0]["real_servers"][0]["weight"] = 7
    doc["vips"]["www"]["services"].append({"port": 8443, "forwarding": "nat", "real_servers": [{"host": "rs2", "port": 443}]})
    return doc


@pytest.fixture
def rebuild(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An output folder built from examples/cluster.json, and the changed cluster's file
    next to it, and a folder a clean build of the changed cluster went to."""
    first = tmp_path / "first.json"
    first.write_bytes((ROOT / "examples/cluster.json").read_bytes())
    second = tmp_path / "second.json"
    second.write_text(json.dumps(_changed(json.loads(first.read_text()))))
    out = tmp_path / "out"
    assert build(first, out).code == 0
    fresh = tmp_path / "fresh"
    assert build(second, fresh).code == 0
    return out, second, fresh


def _count(monkeypatch: pytest.MonkeyPatch, name: str, src: Path, out: Path) -> int:
    """How often a clean build of src over a copy of out calls os.<name>."""
    copy_ = out.with_name("count")
    shutil.copytree(out, copy_, symlinks=True)
    counter = Fault(getattr(os, name), 0, errno.EIO)
    with monkeypatch.context() as m:
        m.setattr(os, name, counter)
        assert build(src, copy_).code == 0
    shutil.rmtree(copy_)
    return counter.calls


FAULTS = [
    # (os function, errno, fails from the n-th call on, what the message must say)
    pytest.param("write", errno.ENOSPC, True, "No space left on device", id="full-disk-on-nth-write"),
    pytest.param("replace", errno.EIO, False, "Input/output error", id="nth-rename-fails"),
    pytest.param("replace", errno.EBUSY, False, "Device or resource busy", id="nth-rename-busy"),
    pytest.param("mkdir", errno.EACCES, False, "Permission denied", id="nth-mkdir-fails"),
]


@pytest.mark.parametrize("name, error, lasting, says", FAULTS)
def test_failed_rebuild_leaves_the_previous_tree(
    rebuild: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, name: str, error: int, lasting: bool, says: str
) -> None:
    """For every n: the n-th call fails, and the previous tree is still there byte for byte
    and mode for mode, with no temporary file, no new folder, and a message, not a trace."""
    out, second, fresh = rebuild
    before = snapshot(out)
    around = sorted(p.name for p in out.parent.iterdir())
    calls = _count(monkeypatch, name, second, out)
    assert calls >= 3, f"a rebuild calls os.{name} only {calls} times: the fault never hits"
    for n in range(1, calls + 1):
        fault = Fault(getattr(os, name), n, error, lasting)
        with monkeypatch.context() as m:
            m.setattr(os, name, fault)
            run = build(second, out)
        assert fault.calls >= n, "the fault was never reached"
        assert run.code == 1, f"os.{name} #{n} failed, and lvsgen build exited {run.code}\n{run.stderr}"
        assert run.stdout == ""
        assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
        assert run.stderr.startswith(f"lvsgen: cannot write {out}: ") and says in run.stderr, run.stderr
        assert run.stderr.count("\n") == 1, run.stderr
        assert snapshot(out) == before, f"os.{name} #{n} failed and the previous tree changed"
        assert sorted(p.name for p in out.parent.iterdir()) == around
    # After all that, a build without a fault gives exactly the changed cluster's tree.
    assert build(second, out).code == 0
    assert snapshot(out) == snapshot(fresh)


def test_rebuild_without_hard_links(rebuild: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a filesystem without hard links, the previous files are kept as copies: a rename
    that fails still leaves the previous tree, and a build that does not fail is right."""
    out, second, fresh = rebuild
    before = snapshot(out)
    renames = _count(monkeypatch, "replace", second, out)
    monkeypatch.setattr(os, "link", Fault(os.link, 1, errno.EPERM, lasting=True))
    for n in range(1, renames + 1):
        with monkeypatch.context() as m:
            m.setattr(os, "replace", Fault(os.replace, n, errno.EIO))
            run = build(second, out)
        assert run.code == 1 and "Input/output error; nothing was changed" in run.stderr, run.stderr
        assert snapshot(out) == before, f"os.replace #{n} failed and the previous tree changed"
    assert build(second, out).code == 0
    assert snapshot(out) == snapshot(fresh)


def test_rename_that_keeps_failing(rebuild: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rename from the n-th on fails (a filesystem gone read-only), so the undo fails
    too: the message says which files are new and where their previous versions are, each of
    them is there, and the next build that can write cleans up and gives the right tree."""
    out, second, fresh = rebuild
    before = snapshot(out)
    renames = _count(monkeypatch, "replace", second, out)
    for n in range(2, renames + 1, 3):
        shutil.rmtree(out)
        assert build(second.with_name("first.json"), out).code == 0
        with monkeypatch.context() as m:
            m.setattr(os, "replace", Fault(os.replace, n, errno.EROFS, lasting=True))
            run = build(second, out)
        assert run.code == 1 and run.stderr.count("\n") == 1, run.stderr
        assert "Traceback" not in run.stderr and "Read-only file system" in run.stderr, run.stderr
        assert "could not be put back" in run.stderr, run.stderr
        after = snapshot(out)
        for name, entry in before.items():
            if entry[0] == "file" and after.get(name) != entry:
                kept = str(Path(name).with_name(f".{Path(name).name}.lvsgen-old"))
                assert after.get(kept) == entry, f"#{n}: the previous {name} is lost"
                assert str(out / name) in run.stderr, f"#{n}: the message does not name {name}"
        assert build(second, out).code == 0
        assert snapshot(out) == snapshot(fresh), f"#{n}: the next build did not clean up"


def test_identical_files_are_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host's engine is the same bytes: the build writes it once and hard-links the
    other hosts' to it; --check of that tree finds nothing to change; and where there are no
    hard links, each host gets its own copy, the same tree byte for byte."""
    out = tmp_path / "out"
    assert build(ROOT / "examples/cluster.json", out).code == 0
    engines = sorted(out.glob("*/lvsgen.sh"))
    assert len(engines) > 2 and len({p.stat().st_ino for p in engines}) == 1
    check = CliRunner().invoke(cli.app, ["build", "--check", str(ROOT / "examples/cluster.json"), "-o", str(out)])
    assert check.exit_code == 0 and check.stdout == "", check.stdout
    copies = tmp_path / "copies"
    monkeypatch.setattr(os, "link", Fault(os.link, 1, errno.EPERM, lasting=True))
    assert build(ROOT / "examples/cluster.json", copies).code == 0
    assert len({p.stat().st_ino for p in copies.glob("*/lvsgen.sh")}) == len(engines)
    assert snapshot(copies) == snapshot(out)
