"""The model and the ipvsadm order, unit by unit."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from lvsgen import model, pipeline
from lvsgen.artifacts import ipvsadm as ipvs
from lvsgen.order import sort_dests

from cases import ROOT


class D:
    def __init__(self, address: str, port: int = 80):
        self.address = ipaddress.ip_address(address)
        self.port = port

    def __repr__(self) -> str:
        return f"{self.address}:{self.port}"


def test_dest_order_wraps_like_ipvsadm() -> None:
    # ipvsadm compares ntohl(a) - ntohl(b) as a signed int: 192.0.2.1 - 10.0.0.1 wraps negative.
    got = sort_dests([D("10.0.0.1"), D("192.0.2.12"), D("192.0.2.11", 81), D("192.0.2.11", 80)])
    assert [repr(d) for d in got] == ["192.0.2.11:80", "192.0.2.11:81", "192.0.2.12:80", "10.0.0.1:80"]


def test_ipv6_dests_compare_word_by_word() -> None:
    got = sort_dests([D("2001:db8::2"), D("2001:db8::1:0"), D("2001:db8::1")])
    assert [str(d.address) for d in got] == ["2001:db8::1", "2001:db8::2", "2001:db8::1:0"]


def test_defaults_come_from_the_schema() -> None:
    schema = json.loads((ROOT / "schemas/cluster.schema.json").read_text())
    assert model.schema_default("service", "scheduler") == schema["$defs"]["service"]["properties"]["scheduler"]["default"]
    cluster = pipeline.load(ROOT / "examples/cluster.json")
    lb2 = cluster.host("lb2")
    assert dict(lb2.ipvs_sysctls) == {"conn_reuse_mode": 1, "expire_nodest_conn": 1, "expire_quiescent_template": 1}
    assert cluster.host("rs1").vip_device is model.VipDevice.DUMMY


def test_model_is_immutable() -> None:
    cluster = pipeline.load(ROOT / "examples/seed-dr.json")
    try:
        cluster.hosts[0].interface = "eth9"  # type: ignore[misc]
    except AttributeError:
        return
    raise AssertionError("the model must be frozen")


def test_persistence_lines() -> None:
    cluster = pipeline.load(ROOT / "tests/cases/mixed/cluster.json")
    lines = {ipvs.service_line(s) for v in cluster.vips for s in v.services}
    assert "-A -t 203.0.113.20:443 -s lc -p 600 -M 255.255.0.0" in lines
    assert "-A -t [2001:db8:1::100]:80 -s mh -p 60 -M 64 -b mh-fallback" in lines


def test_service_options_in_ipvsadm_order() -> None:
    """As ipvsadm -S prints them (seen in the VM): -p, -M, --pe, then -o, then -b with the flags
    in the kernel's bit order (fallback before port, whatever the file's order)."""
    cluster = pipeline.load(ROOT / "tests/cases/mixed/cluster.json")
    lines = {ipvs.service_line(s) for v in cluster.vips for s in v.services}
    assert "-A --sctp-service 203.0.113.10:3868 -s sh -b sh-fallback,sh-port" in lines  # file: sh-port first
    assert "-A -u 203.0.113.10:5060 -s sh -p 1800 --pe sip -o -b sh-fallback" in lines
    assert "-A -u 203.0.113.10:53 -s rr -o" in lines


def test_port_is_the_service_port_except_under_nat() -> None:
    cluster = pipeline.load(ROOT / "tests/cases/mixed/cluster.json")
    nat = next(v for v in cluster.vips if v.name == "nat").services[0]
    assert {rs.port for rs in nat.real_servers} == {8080}


def test_input_path_in_headers_is_the_file_name_only(tmp_path: Path) -> None:
    cluster = pipeline.load(ROOT / "examples/seed-dr.json")
    assert cluster.source == "seed-dr.json"


def test_fast_order_agrees_with_the_comparator() -> None:
    """The numeric fast path must give exactly what ipvsadm's wrapping comparison gives."""
    import random
    from functools import cmp_to_key

    from lvsgen.order import cmp_dests

    rng = random.Random(7)
    for _ in range(300):
        base = rng.choice(["192.0.2.", "198.51.100.", "10.0.0."])
        dests = [D(base + str(rng.randint(1, 254)), rng.choice([80, 443])) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.3:
            dests.append(D(rng.choice(["10.1.2.3", "203.0.113.9", "2001:db8::1"])))
        dests = [d for d in dests if d.address.version == dests[0].address.version]
        assert [repr(d) for d in sort_dests(dests)] == [repr(d) for d in sorted(dests, key=cmp_to_key(cmp_dests))]


def test_ipv6_text_is_glibcs_inet_ntop_whatever_the_python() -> None:
    """ipvsadm and iproute2 print addresses with glibc's inet_ntop; Python's own compressed
    form differs for IPv4-mapped and -compatible addresses (and changed in 3.13)."""
    import itertools
    import socket

    from lvsgen.addresses import text

    words = [0, 1, 0xFFFF, 0xC000, 0x201]
    for pattern in itertools.product([0, 1], repeat=8):
        for fill in words[1:]:
            for last in ((0, 1), (0xC000, 0x264), (0, 0x100), (1, 0)):
                w = [fill if bit else 0 for bit in pattern]
                w[6], w[7] = last
                for mapped in (False, True):
                    if mapped:
                        w[:6] = [0, 0, 0, 0, 0, 0xFFFF]
                    packed = b"".join(x.to_bytes(2, "big") for x in w)
                    address = ipaddress.IPv6Address(packed)
                    assert text(address) == socket.inet_ntop(socket.AF_INET6, packed), w
