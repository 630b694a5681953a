"""The functions of the host engine, the bash library every generated setup.sh sources.

LIB is the engine as every host gets it, assembled by lvsgen.engine from templates/host/ and
written once per session (the engine_file fixture). Every test runs
`bash -c 'source "$LIB"; ...'` on recorded inputs (tests/host/dumps: a real kernel's
/proc/net/ip_vs and `ipvsadm -S -n` of the same table) or hand-made ones: no root, no kernel, no
ipvsadm. Paths reach bash through the environment or as positional arguments, never pasted into
the script text, and the temporary folders have spaces in their names.

The library is awk-heavy and setup.sh accepts mawk or gawk, so every test runs once with each of
them that is installed (at least the system awk).

Four bugs this file found (empty files in the plan, HZ learned from mismatched services, IPv6
firewall-mark names, a record without a final newline) were fixed; their tests stay.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsgen import procimage

ROOT = Path(__file__).resolve().parent.parent
LIB = Path("/nonexistent")  # the assembled engine: set by the engine fixture below
DUMPS = ROOT / "tests" / "host" / "dumps"
PROC_MIXED = DUMPS / "proc-mixed.txt"
SAVED_MIXED = DUMPS / "saved-mixed.txt"
CASES = ROOT / "tests" / "cases"
# The rules files of the golden cases: etc/ipvsadm.rules, or etc/lvsgen/ipvsadm.rules.
GOLDEN_RULES = sorted(CASES.glob("*/expected/*/etc/**/ipvsadm.rules"))

RECORD_HEADER = "# what lvsgen added on this host; setup.sh removes only what is listed here\n"


# --- running the library -------------------------------------------------------------------------


def _awks() -> dict[str, str]:
    found = {name: path for name in ("mawk", "gawk") if (path := shutil.which(name))}
    if not found:
        found["awk"] = shutil.which("awk") or "awk"
    return found


AWKS = _awks()


@pytest.fixture(scope="module", autouse=True, params=sorted(AWKS))
def awk_impl(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Put one awk implementation first on PATH, as 'awk', for every bash the tests start."""
    shim = tmp_path_factory.mktemp(f"awk {request.param}")
    (shim / "awk").symlink_to(AWKS[request.param])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
        yield request.param


@pytest.fixture(scope="module", autouse=True)
def _assembled_engine(engine_file: Path) -> None:
    global LIB
    LIB = engine_file


def bash(script: str, *args: str | Path, **env: str | Path) -> subprocess.CompletedProcess[str]:
    """Run SCRIPT after sourcing the library; ARGS are $1..., ENV is added to a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LVS_", "LVSGEN_"))}
    base.update({"LIB": str(LIB), "LC_ALL": "C"})
    base.update({k: str(v) for k, v in env.items()})
    return subprocess.run(
        ["bash", "-c", 'source "$LIB" || exit 99\n' + script, "test_host_lib", *map(str, args)],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def lines(text: str) -> list[str]:
    return text.splitlines()


# --- /proc/net/ip_vs, written the way the kernel writes it (net/netfilter/ipvs/ip_vs_ctl.c) ------------

PROC_HEADER = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
)


def _proc_addr(addr: str, port: int) -> str:
    ip = ipaddress.ip_address(addr)
    if ip.version == 6:
        return f"[{ip.exploded}]:{port:04X}"  # %pI6: eight groups, leading zeros kept, lowercase
    return f"{int(ip):08X}:{port:04X}"


def v4mask(mask: str) -> int:
    return int(ipaddress.IPv4Address(mask))


def v6mask(plen: int) -> int:
    """An IPv6 service keeps its prefix length in the netmask field; /proc prints ntohl() of it,
    which on a little-endian kernel puts the length in the top byte (64 -> 40000000)."""
    return plen << 24


def proc_service(
    proto: str, addr: str | int, port: int = 0, sched: str = "rr", *, ops: bool = False, persistent: tuple[int, int] | None = None
) -> str:
    """One service line. addr is the firewall mark for proto FWM; persistent is (jiffies, netmask)."""
    if proto == "FWM":
        assert isinstance(addr, int)
        head = f"FWM  {addr:08X} {sched} {'ops ' if ops else ''}"
    elif ipaddress.ip_address(addr).version == 6:  # the kernel prints no 'ops' for IPv6 services
        head = f"{proto}  {_proc_addr(str(addr), port)} {sched} "
    else:
        head = f"{proto}  {_proc_addr(str(addr), port)} {sched} {'ops ' if ops else ''} "
    if persistent is None:
        return head + "\n"
    jiffies, netmask = persistent
    return head + f"persistent {jiffies} {netmask:08X}\n"


def proc_dest(addr: str, port: int, fwd: str = "Route", weight: int = 1, active: int = 0, inact: int = 0) -> str:
    return f"  -> {_proc_addr(addr, port)}      {fwd:<7} {weight:<6} {active:<10} {inact:<10}\n"


def mixed_dump() -> str:
    """The recorded table, rebuilt with the helpers above (checked against the recording)."""
    return PROC_HEADER + "".join(
        [
            proc_service("TCP", "2001:db8:1::100", 80, "mh", persistent=(15000, v6mask(64))),
            proc_dest("2001:db8:1::2", 80, "Route", 1),
            proc_service("SCTP", "203.0.113.10", 3868, "sh"),
            proc_dest("198.51.100.11", 3868, "Masq", 1),
            proc_service("TCP", "203.0.113.20", 443, "lc", persistent=(150000, v4mask("255.255.0.0"))),
            proc_dest("192.0.2.21", 443, "Tunnel", 1),
            proc_service("TCP", "203.0.113.21", 443, "lc", persistent=(150000, v4mask("255.255.255.255"))),
            proc_dest("192.0.2.5", 443, "Route", 1),
            proc_service("TCP", "203.0.113.10", 80, "wlc"),
            proc_dest("198.51.100.12", 8080, "Masq", 0),
            proc_dest("198.51.100.11", 8080, "Masq", 5),
            proc_service("UDP", "192.0.2.9", 53, "rr", ops=True),
            proc_service("FWM", 7, sched="rr"),
            proc_dest("192.0.2.30", 0, "Route", 2),
        ]
    )


def test_hand_made_dumps_follow_the_kernel_format_byte_for_byte() -> None:
    assert mixed_dump() == PROC_MIXED.read_text()


def proc(tmp_path: Path, dump: str, hz: str = "250", counts: str = "0") -> subprocess.CompletedProcess[str]:
    path = tmp_path / "proc ip_vs"
    path.write_text(dump)
    return bash('lvs_ipvs_proc "$1" "$2"', hz, counts, LVSGEN_PROC_IPVS=path)


# --- lvs_ipvs_proc ------------------------------------------------------------------------------------


def test_proc_of_the_recorded_table_is_what_ipvsadm_saved() -> None:
    run = bash('lvs_ipvs_proc 250 0', LVSGEN_PROC_IPVS=PROC_MIXED)
    # 4: the table has a firewall-mark service, whose family /proc does not show; the lines are
    # still printed, and the caller reads ipvsadm -S -n instead.
    assert run.returncode == 4, run.stderr
    assert run.stderr == ""
    assert sorted(lines(run.stdout)) == sorted(lines(SAVED_MIXED.read_text()))


@pytest.mark.parametrize("hz", ["", "0"], ids=["empty", "zero"])
def test_proc_without_hz_fails_with_3_on_a_persistent_service(hz: str) -> None:
    run = bash('lvs_ipvs_proc "$1" 0', hz, LVSGEN_PROC_IPVS=PROC_MIXED)
    assert run.returncode == 3


def test_proc_without_hz_reads_a_table_without_persistence(tmp_path: Path) -> None:
    dump = PROC_HEADER + proc_service("TCP", "192.0.2.1", 80, "wlc") + proc_dest("10.0.0.1", 80, "Masq", 3)
    run = proc(tmp_path, dump, hz="")
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == ["-A -t 192.0.2.1:80 -s wlc", "-a -t 192.0.2.1:80 -r 10.0.0.1:80 -m -w 3"]


def test_proc_divides_timeouts_by_hz() -> None:
    run = bash('lvs_ipvs_proc 100 0', LVSGEN_PROC_IPVS=PROC_MIXED)
    assert run.returncode == 4, run.stderr  # the firewall-mark service: see above
    assert "-A -t [2001:db8:1::100]:80 -s mh -p 150 -M 64" in lines(run.stdout)
    assert "-A -t 203.0.113.21:443 -s lc -p 1500" in lines(run.stdout)


def test_proc_flags_masks_and_one_packet_in_ipvsadm_order(tmp_path: Path) -> None:
    """ipvsadm -S prints -s, then -p and -M (none for a full mask), then -o."""
    dump = PROC_HEADER + "".join(
        [
            proc_service("UDP", "192.0.2.1", 53, "rr", ops=True, persistent=(75000, v4mask("255.255.255.0"))),
            proc_service("FWM", 0x1F, sched="wlc", ops=True, persistent=(75000, v4mask("255.255.255.255"))),
            proc_service("TCP", "2001:db8::1", 443, "sh", persistent=(15000, v6mask(128))),
            proc_service("TCP", "2001:db8::2", 443, "sh", persistent=(15000, v6mask(48))),
            proc_service("SCTP", "192.0.2.2", 3868, "rr"),
            proc_dest("2001:db8::a", 3868, "Tunnel", 7),
        ]
    )
    run = proc(tmp_path, dump)
    assert run.returncode == 4, run.stderr  # the firewall-mark service
    assert lines(run.stdout) == [
        "-A -u 192.0.2.1:53 -s rr -p 300 -M 255.255.255.0 -o",
        "-A -f 31 -s wlc -p 300 -o",
        "-A -t [2001:db8::1]:443 -s sh -p 60",
        "-A -t [2001:db8::2]:443 -s sh -p 60 -M 48",
        "-A --sctp-service 192.0.2.2:3868 -s rr",
        "-a --sctp-service 192.0.2.2:3868 -r [2001:db8::a]:3868 -i -w 7 --tun-type ipip",
    ]


COUNTS_DUMP = PROC_HEADER + "".join(
    [
        proc_service("TCP", "192.0.2.1", 80, "wlc"),
        proc_dest("10.0.0.2", 80, "Route", 3, active=17, inact=250),
        proc_dest("10.0.0.1", 80, "Masq", 0, active=4, inact=9),
        proc_service("TCP", "2001:db8::1", 443, "lc", persistent=(15000, v6mask(128))),
        proc_dest("2001:db8::a", 443, "Tunnel", 2, active=1234567, inact=1),
    ]
)


def test_proc_counts_appends_the_active_connections(tmp_path: Path) -> None:
    run = proc(tmp_path, COUNTS_DUMP, counts="1")
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == [
        "-A -t 192.0.2.1:80 -s wlc",
        "-a -t 192.0.2.1:80 -r 10.0.0.2:80 -g -w 3 17",
        "-a -t 192.0.2.1:80 -r 10.0.0.1:80 -m -w 0 4",
        "-A -t [2001:db8::1]:443 -s lc -p 60",
        "-a -t [2001:db8::1]:443 -r [2001:db8::a]:443 -i -w 2 --tun-type ipip 1234567",
    ]


def test_proc_without_counts_has_no_count_column(tmp_path: Path) -> None:
    run = proc(tmp_path, COUNTS_DUMP, counts="0")
    assert run.returncode == 0, run.stderr
    assert "-a -t 192.0.2.1:80 -r 10.0.0.2:80 -g -w 3" in lines(run.stdout)
    assert all(not line.endswith((" 17", " 4", " 1234567")) for line in lines(run.stdout))


@pytest.mark.parametrize("proto", ["IP_47", "ICMP", "tcp"])
def test_proc_unknown_protocol_fails_with_2_and_says_so(tmp_path: Path, proto: str) -> None:
    dump = PROC_HEADER + proc_service("TCP", "192.0.2.1", 80) + proc_service(proto, "192.0.2.2", 0)
    run = proc(tmp_path, dump)
    assert run.returncode == 2
    assert f"unknown protocol {proto}" in run.stderr


# glibc inet_ntop, which ipvsadm -n uses: the longest run of two or more zero groups becomes '::'
# (the first of equal runs), a lone zero group stays, hex is lowercase without leading zeros, and
# an IPv4-mapped (::ffff:0:0/96) or IPv4-compatible (::/96) address ends in a dotted quad.
IPV6_CASES = [
    ("2001:0db8:0001:0000:0000:0000:0000:0100", "2001:db8:1::100"),
    ("2001:0db8:0000:0001:0001:0001:0001:0001", "2001:db8:0:1:1:1:1:1"),  # one zero group: no '::'
    ("2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"),  # tie: the first run
    ("2001:0000:0000:0001:0000:0000:0000:0001", "2001:0:0:1::1"),  # the longest run, not the first
    ("0000:0000:0001:0000:0000:0000:0000:0000", "0:0:1::"),
    ("0000:0000:0000:0000:0000:0000:0000:0000", "::"),
    ("0000:0000:0000:0000:0000:0000:0000:0001", "::1"),
    ("0001:0000:0000:0000:0000:0000:0000:0000", "1::"),
    ("fe80:0000:0000:0000:0000:0000:0000:0000", "fe80::"),
    ("00a0:0b00:0c0d:000e:ABCD:Ef01:0000:0010", "a0:b00:c0d:e:abcd:ef01:0:10"),
    ("0000:0000:0000:0000:0000:ffff:c000:0201", "::ffff:192.0.2.1"),
    ("0000:0000:0000:0000:0000:ffff:0000:0000", "::ffff:0.0.0.0"),
    ("0000:0000:0000:0000:0000:0000:c000:0201", "::192.0.2.1"),
    ("0000:0000:0000:0000:0001:ffff:c000:0201", "::1:ffff:c000:201"),  # not mapped: no dotted quad
    ("0064:ff9b:0000:0000:0000:0000:c000:0201", "64:ff9b::c000:201"),
]


@pytest.mark.parametrize(("full", "short"), IPV6_CASES, ids=[short for _, short in IPV6_CASES])
def test_proc_compresses_ipv6_like_inet_ntop(tmp_path: Path, full: str, short: str) -> None:
    assert socket.inet_ntop(socket.AF_INET6, bytes.fromhex(full.replace(":", ""))) == short  # the table itself
    dump = PROC_HEADER + f"TCP  [{full}]:0050 rr \n" + f"  -> [{full}]:1F90      Masq    1      0          0         \n"
    run = proc(tmp_path, dump)
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == [f"-A -t [{short}]:80 -s rr", f"-a -t [{short}]:80 -r [{short}]:8080 -m -w 1"]


def _ipv6_battery() -> list[bytes]:
    """Every pattern of zero and non-zero groups (2**8), each non-zero group a different kind of
    value, and the IPv4-mapped and -compatible forms around their edges."""
    rng = random.Random(20240601)
    values = [0x1, 0xF, 0xA0, 0xB00, 0xFFFF, 0xDB8, 0x2001, 0x8000]
    out = []
    for mask in range(256):
        groups = [0 if mask >> i & 1 else values[(i + mask) % len(values)] for i in range(8)]
        out.append(b"".join(g.to_bytes(2, "big") for g in groups))
    for v4 in (0x00000000, 0x00000001, 0x01000000, 0xC0000201, 0xFFFFFFFF, 0x0000FFFF):
        for prefix in (b"\0" * 10 + b"\xff\xff", b"\0" * 12, b"\0" * 10 + b"\0\x01", b"\0" * 8 + b"\xff\xff\0\0"):
            out.append(prefix + v4.to_bytes(4, "big"))
    out += [rng.getrandbits(128).to_bytes(16, "big") for _ in range(40)]
    return out


def test_proc_ipv6_agrees_with_glibc_inet_ntop_on_every_zero_pattern(tmp_path: Path) -> None:
    battery = _ipv6_battery()
    dump = PROC_HEADER
    want = []
    for port, raw in enumerate(battery, start=1):
        full = ipaddress.IPv6Address(raw).exploded
        dump += f"UDP  [{full}]:{port:04X} rr \n  -> [{full}]:0035      Route   1      0          0         \n"
        short = socket.inet_ntop(socket.AF_INET6, raw)
        want += [f"-A -u [{short}]:{port} -s rr", f"-a -u [{short}]:{port} -r [{short}]:53 -g -w 1"]
    run = proc(tmp_path, dump)
    assert run.returncode == 0, run.stderr
    got = lines(run.stdout)
    assert len(got) == len(want)
    wrong = [(g, w) for g, w in zip(got, want) if g != w]
    assert not wrong, f"{len(wrong)} of {len(want)} lines differ, e.g. {wrong[:5]}"


# --- lvs_ipvs_active -----------------------------------------------------------------------------------


def test_active_sums_the_active_connections_of_the_draining_real_servers(tmp_path: Path) -> None:
    (tmp_path / "proc ip_vs").write_text(COUNTS_DUMP)
    run_dir = tmp_path / "run dir"
    run_dir.mkdir()
    (run_dir / "hz").write_text("250\n")
    plan = tmp_path / "the plan"
    plan.write_text(  # a plan's W lines without their tag, as lvs_ipvs_diff splits them
        "-t 192.0.2.1:80 10.0.0.2:80\n"
        "-t 192.0.2.1:80 10.0.0.1:80\n"
        "-t 192.0.2.1:80 10.0.0.99:80\n"  # gone already: counts nothing
    )
    run = bash('lvs_ipvs_active "$1"', plan, LVSGEN_PROC_IPVS=tmp_path / "proc ip_vs", LVSGEN_RUN=run_dir)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "21\n"
    plan.write_text("-t [2001:db8::1]:443 [2001:db8::a]:443\n")
    run = bash('lvs_ipvs_active "$1"', plan, LVSGEN_PROC_IPVS=tmp_path / "proc ip_vs", LVSGEN_RUN=run_dir)
    assert run.stdout == "1234567\n"


# --- lvs_ipvs_plan -----------------------------------------------------------------------------------------


def plan(
    desired: str, live: str, recorded: str = "", owned: int = 1, drain: int = 1, only: str | None = None
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="lvsgen plan ") as tmp:
        files = []
        for name, text in (("desired rules", desired), ("live table", live), ("recorded services", recorded)):
            path = Path(tmp) / name
            path.write_text(text)
            files.append(path)
        if only is None:
            return bash('lvs_ipvs_plan "$1" "$2" "$3" "$4" "$5"', *files, str(owned), str(drain))
        (Path(tmp) / "only services").write_text(only)
        return bash('lvs_ipvs_plan "$1" "$2" "$3" "$4" "$5" save "" "$6"', *files, str(owned), str(drain), Path(tmp) / "only services")


TCP = "-t 10.0.0.1:80"
UDP = "-u 10.0.0.1:53"
OTHER = "-t 10.0.0.2:80"
DESIRED = f"""\
-A {TCP} -s wlc
-a {TCP} -r 10.0.1.1:80 -g -w 1
-a {TCP} -r 10.0.1.2:80 -g -w 2
-A {UDP} -s rr
-a {UDP} -r 10.0.1.1:53 -g -w 1
"""
FIRST_LOAD = [
    f"A -A {TCP} -s wlc",
    f"A -A {UDP} -s rr",
    f"A -a {TCP} -r 10.0.1.1:80 -g -w 1",
    f"A -a {TCP} -r 10.0.1.2:80 -g -w 2",
    f"A -a {UDP} -r 10.0.1.1:53 -g -w 1",
]
EXTRA_RS = DESIRED + f"-a {TCP} -r 10.0.1.3:80 -g -w 4\n"
EXTRA_RS_DRAINED = [f"A -e {TCP} -r 10.0.1.3:80 -g -w 0", f"W {TCP} 10.0.1.3:80", f"R -d {TCP} -r 10.0.1.3:80"]
EXTRA_SVC = DESIRED + f"-A {OTHER} -s rr\n-a {OTHER} -r 10.0.2.1:80 -m -w 3\n-a {OTHER} -r 10.0.2.2:80 -m -w 0\n"
EXTRA_SVC_DRAINED = [f"A -e {OTHER} -r 10.0.2.1:80 -m -w 0", f"W {OTHER} 10.0.2.1:80", f"W {OTHER} 10.0.2.2:80", f"R -D {OTHER}"]
COMMENTED = "# lvsgen: cluster x, host lb\n\n" + DESIRED.replace(f"-A {UDP}", f"   \n#\t-A {UDP} -s wrr\n\t\n-A {UDP}")

PLAN_CASES = [
    pytest.param(DESIRED, "", "", 1, 1, FIRST_LOAD, id="first-load"),
    pytest.param(DESIRED, "", "", 0, 0, FIRST_LOAD, id="first-load-not-owned-no-drain"),
    pytest.param(DESIRED, DESIRED, "", 1, 1, [], id="no-change"),
    pytest.param(
        DESIRED,
        f"-A {UDP}  -s   rr\n-a {UDP} -r 10.0.1.1:53\t-g -w 1\n-A {TCP} -s wlc\n-a {TCP} -r 10.0.1.2:80 -g -w 2\n-a {TCP} -r 10.0.1.1:80 -g -w 1\n",
        "",
        1,
        1,
        [],
        id="no-change-other-order-and-spacing",
    ),
    pytest.param(DESIRED, DESIRED.replace("10.0.1.2:80 -g -w 2", "10.0.1.2:80 -g -w 3"), "", 1, 1, [f"A -e {TCP} -r 10.0.1.2:80 -g -w 2"], id="weight"),
    pytest.param(DESIRED, DESIRED.replace("10.0.1.2:80 -g -w 2", "10.0.1.2:80 -m -w 2"), "", 1, 1, [f"A -e {TCP} -r 10.0.1.2:80 -g -w 2"], id="forwarding"),
    pytest.param(DESIRED, DESIRED.replace(f"-A {TCP} -s wlc", f"-A {TCP} -s rr"), "", 1, 1, [f"A -E {TCP} -s wlc"], id="scheduler"),
    pytest.param(DESIRED, DESIRED.replace(f"-A {TCP} -s wlc", f"-A {TCP} -s wlc -p 300"), "", 1, 1, [f"A -E {TCP} -s wlc"], id="persistence-off"),
    pytest.param(
        DESIRED.replace(f"-A {UDP} -s rr", f"-A {UDP} -s rr -p 60 -M 255.255.255.0"), DESIRED, "", 1, 1, [f"A -E {UDP} -s rr -p 60 -M 255.255.255.0"], id="persistence-on"
    ),
    pytest.param(DESIRED, DESIRED.replace(f"-a {TCP} -r 10.0.1.2:80 -g -w 2\n", ""), "", 1, 1, [f"A -a {TCP} -r 10.0.1.2:80 -g -w 2"], id="added-rs"),
    pytest.param(DESIRED, EXTRA_RS, "", 1, 1, EXTRA_RS_DRAINED, id="removed-rs-drain"),
    pytest.param(DESIRED, EXTRA_RS, "", 1, 0, [f"R -d {TCP} -r 10.0.1.3:80"], id="removed-rs-no-drain"),
    pytest.param(DESIRED, EXTRA_RS.replace("10.0.1.3:80 -g -w 4", "10.0.1.3:80 -g -w 0"), "", 1, 1, EXTRA_RS_DRAINED[1:], id="removed-rs-at-weight-0"),
    pytest.param(DESIRED, EXTRA_SVC, "", 1, 1, EXTRA_SVC_DRAINED, id="removed-svc-owned-drain"),
    pytest.param(DESIRED, EXTRA_SVC, "", 1, 0, [f"R -D {OTHER}"], id="removed-svc-owned-no-drain"),
    pytest.param(DESIRED, EXTRA_SVC, "", 0, 1, [], id="foreign-svc-untouched"),
    pytest.param(DESIRED, EXTRA_SVC, f"-t 10.0.0.9:80\n{UDP}\n", 0, 1, [], id="foreign-svc-others-recorded"),
    pytest.param(DESIRED, EXTRA_SVC, f"{UDP}\n{OTHER}\n", 0, 1, EXTRA_SVC_DRAINED, id="recorded-svc-removed-drain"),
    pytest.param(DESIRED, EXTRA_SVC, f"{OTHER}\n", 0, 0, [f"R -D {OTHER}"], id="recorded-svc-removed-no-drain"),
    pytest.param(DESIRED, EXTRA_RS, "", 0, 1, EXTRA_RS_DRAINED, id="foreign-rs-in-described-svc"),
    pytest.param(COMMENTED, "", "", 1, 1, FIRST_LOAD, id="comments-first-load"),
    pytest.param(COMMENTED, COMMENTED, "# a comment\n\n", 1, 1, [], id="comments-no-change"),
    pytest.param(
        DESIRED + "-A -t 10.0.0.3:443 -s sh\n-a -t 10.0.0.3:443 -r 10.0.3.1:443 -i -w 1 --tun-type ipip\n",
        f"-A {TCP} -s rr\n-a {TCP} -r 10.0.1.9:80 -g -w 2\n-a {TCP} -r 10.0.1.1:80 -g -w 5\n"
        f"-A {UDP} -s rr\n-a {UDP} -r 10.0.1.1:53 -g -w 1\n-A {OTHER} -s rr\n-a {OTHER} -r 10.0.2.1:80 -g -w 1\n",
        "",
        1,
        1,
        [
            f"A -E {TCP} -s wlc",
            "A -A -t 10.0.0.3:443 -s sh",
            f"A -e {TCP} -r 10.0.1.1:80 -g -w 1",
            f"A -a {TCP} -r 10.0.1.2:80 -g -w 2",
            "A -a -t 10.0.0.3:443 -r 10.0.3.1:443 -i -w 1 --tun-type ipip",
            f"A -e {TCP} -r 10.0.1.9:80 -g -w 0",
            f"A -e {OTHER} -r 10.0.2.1:80 -g -w 0",
            f"W {TCP} 10.0.1.9:80",
            f"W {OTHER} 10.0.2.1:80",
            f"R -d {TCP} -r 10.0.1.9:80",
            f"R -D {OTHER}",
        ],
        id="everything-at-once",
    ),
]


@pytest.mark.parametrize(("desired", "live", "recorded", "owned", "drain", "want"), PLAN_CASES)
def test_plan(desired: str, live: str, recorded: str, owned: int, drain: int, want: list[str]) -> None:
    run = plan(desired, live, recorded, owned, drain)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert lines(run.stdout) == want


@pytest.mark.parametrize(
    ("desired", "live", "recorded", "want"),
    [
    pytest.param(DESIRED, "", f"{TCP}\n{UDP}\n", FIRST_LOAD, id="boot-empty-live-with-record"),
    pytest.param("", EXTRA_SVC, "", [f"R -D {TCP}", f"R -D {UDP}", f"R -D {OTHER}"], id="empty-desired"),
    ],
)
def test_plan_reads_empty_files(desired: str, live: str, recorded: str, want: list[str]) -> None:
    run = plan(desired, live, recorded, owned=1, drain=0)
    assert (run.returncode, run.stderr) == (0, "")
    assert lines(run.stdout) == want


# ipvsadm -S names an IPv6 firewall-mark service '-f MARK -6' (ipvsadm.c, print_service_entry), in
# its -A line and in each of its -a lines: '-a -f 7 -6 -r [2001:db8::5]:0 -g -w 1'.
FWM6 = "-A -f 7 -6 -s rr\n-a -f 7 -6 -r [2001:db8::5]:0 -g -w 1\n"


@pytest.mark.parametrize(
    ("owned", "want"), [pytest.param(0, [], id="foreign-untouched"), pytest.param(1, ["R -D -f 7 -6"], id="owned-removed")]
)
def test_plan_reads_an_ipv6_firewall_mark_service(owned: int, want: list[str]) -> None:
    run = plan(DESIRED, DESIRED + FWM6, "", owned=owned, drain=0)
    assert (run.returncode, run.stderr) == (0, "")
    assert lines(run.stdout) == want


@pytest.mark.parametrize(
    ("desired", "live", "where"),
    [
    pytest.param(DESIRED.replace("-r 10.0.1.2:80", "10.0.1.2:80"), DESIRED, "desired line 3", id="rs-without-r"),
    pytest.param(f"-A {TCP}\n" + DESIRED, DESIRED, "desired line 1", id="service-without-scheduler"),
    pytest.param("# head\n\n" + DESIRED + "ipvsadm -A -t 10.0.0.5:80 -s rr\n", DESIRED, "desired line 8", id="line-numbers-count-comments"),
    pytest.param(DESIRED, DESIRED.replace(f"-A {UDP}", "-E -u 10.0.0.1:53"), "live line 4", id="live-edit-line"),
    pytest.param(DESIRED, "-a -t 10.0.0.1:80 -r\n", "live line 1", id="live-rs-without-address"),
    ],
)
def test_plan_malformed_line_fails_with_2_and_names_it(desired: str, live: str, where: str) -> None:
    run = plan(desired, live)
    assert run.returncode == 2
    assert run.stdout == ""  # never half a plan
    assert f"{where}: cannot read" in run.stderr


# The property: a tiny model of ipvsadm, keyed like the library (a service is the two words after
# -A, a real server its service and its -r address).
Table = dict[str, tuple[str, dict[str, str]]]
SERVICE_KEYS = ["-t 10.0.0.1:80", "-t 10.0.0.2:80", "-u 10.0.0.1:53", "-t [2001:db8::1]:443"]
RS4 = ["10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:8080"]
RS6 = ["[2001:db8::a]:443", "[2001:db8::b]:443"]
SVC_ATTRS = ["-s rr", "-s wlc", "-s rr -p 300", "-s sh -p 60 -M 255.255.255.0"]
DEST_ATTRS = st.builds(
    lambda fwd, w: f"{fwd} -w {w}" + (" --tun-type ipip" if fwd == "-i" else ""), st.sampled_from(["-g", "-m", "-i"]), st.sampled_from([0, 1, 2, 5])
)


@st.composite
def tables(draw: st.DrawFn, min_size: int = 0) -> Table:
    keys = draw(st.lists(st.sampled_from(SERVICE_KEYS), unique=True, min_size=min_size, max_size=len(SERVICE_KEYS)))
    table: Table = {}
    for key in keys:
        pool = RS6 if "[" in key else RS4
        rss = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
        table[key] = (draw(st.sampled_from(SVC_ATTRS)), {rs: draw(DEST_ATTRS) for rs in rss})
    return table


def render(table: Table, comments: bool = False) -> str:
    out = ["# rules"] if comments else []
    for key, (attrs, dests) in table.items():
        out.append(f"-A {key} {attrs}")
        out += [f"-a {key} -r {rs} {a}" for rs, a in dests.items()]
        if comments:
            out.append("")
    return "".join(f"{line}\n" for line in out)


def as_set(table: Table) -> set[str]:
    return set(lines(render(table)))


def ipvsadm(table: Table, commands: list[str]) -> Table:
    """Apply ipvsadm commands to a copy of TABLE; any command ipvsadm would refuse fails the test."""
    t = {k: (a, dict(d)) for k, (a, d) in table.items()}
    for line in commands:
        w = line.split()
        op, svc = w[0], f"{w[1]} {w[2]}"
        if op in ("-A", "-E"):
            assert (svc in t) == (op == "-E"), f"ipvsadm would refuse {line!r}"
            t[svc] = (" ".join(w[3:]), t[svc][1] if op == "-E" else {})
        elif op in ("-a", "-e", "-d"):
            assert w[3] == "-r" and svc in t, f"ipvsadm would refuse {line!r}"
            dests = t[svc][1]
            assert (w[4] in dests) == (op != "-a"), f"ipvsadm would refuse {line!r}"
            if op == "-d":
                assert len(w) == 5, line
                del dests[w[4]]
            else:
                dests[w[4]] = " ".join(w[5:])
        elif op == "-D":
            assert len(w) == 3 and svc in t, f"ipvsadm would refuse {line!r}"
            del t[svc]
        else:
            raise AssertionError(f"not an ipvsadm command: {line!r}")
    return t


def _weight(attrs: str) -> int:
    w = attrs.split()
    return int(w[w.index("-w") + 1])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    desired=tables(min_size=1),
    live=tables(),
    recorded=st.sets(st.sampled_from(SERVICE_KEYS)),
    owned=st.sampled_from([0, 1]),
    drain=st.sampled_from([0, 1]),
    comments=st.booleans(),
)
def test_plan_property_applying_it_yields_the_desired_table(
    desired: Table, live: Table, recorded: set[str], owned: int, drain: int, comments: bool
) -> None:
    run = plan(render(desired, comments), render(live), "".join(f"{k}\n" for k in sorted(recorded)), owned, drain)
    assert run.returncode == 0, run.stderr
    out = lines(run.stdout)
    tags = [line.split(" ", 1)[0] for line in out]
    assert tags == sorted(tags, key="AWR".index), "A lines, then W, then R"
    a_cmds = [line[2:] for line in out if line.startswith("A ")]
    r_cmds = [line[2:] for line in out if line.startswith("R ")]
    waits = {line[2:] for line in out if line.startswith("W ")}
    ops_a = [c.split()[0] for c in a_cmds]
    ops_r = [c.split()[0] for c in r_cmds]
    assert ops_a == sorted(ops_a, key=lambda op: op in ("-a", "-e")), "every -A/-E before every -a/-e"
    assert set(ops_r) <= {"-d", "-D"} and ops_r == sorted(ops_r, key=lambda op: op == "-D"), "every -d before every -D"
    assert set(ops_a) <= {"-A", "-E", "-a", "-e"}

    kept = {k: v for k, v in live.items() if k not in desired and not owned and k not in recorded}
    gone = {k for k in live if k not in desired and k not in kept}
    leaving = {f"{svc} {rs}" for svc, (_, dests) in live.items() for rs in dests if svc in gone or (svc in desired and rs not in desired[svc][1])}
    assert waits == (leaving if drain else set())

    middle = ipvsadm(live, a_cmds)
    for w in waits:  # drained to weight 0 before the wait
        svc, rs = w.rsplit(" ", 1)
        assert _weight(middle[svc][1][rs]) == 0, w
    final = ipvsadm(middle, r_cmds)
    assert as_set(final) == as_set(desired) | as_set(kept)
    if owned:
        assert as_set(final) == as_set(desired)
    again = plan(render(desired), render(final), "".join(f"{k}\n" for k in sorted(recorded)), owned, drain)
    assert (again.returncode, again.stdout) == (0, ""), "a second run has nothing to do"


def _service_of(command: str) -> str:
    w = command.split()
    return f"{w[1]} {w[2]}" if w[0] in ("-A", "-E", "-a", "-e", "-d", "-D") else f"{w[0]} {w[1]}"  # W: "svc rs"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    desired=tables(min_size=1),
    live=tables(),
    recorded=st.sets(st.sampled_from(SERVICE_KEYS)),
    owned=st.sampled_from([0, 1]),
    only=st.sets(st.sampled_from(SERVICE_KEYS), min_size=1),
)
def test_plan_scoped_to_some_services_is_the_full_plan_restricted_to_them(
    desired: Table, live: Table, recorded: set[str], owned: int, only: set[str]
) -> None:
    """What the verify after a change relies on: reading only the touched services gives the
    same answer for them as reading everything."""
    rec = "".join(f"{k}\n" for k in sorted(recorded))
    full = plan(render(desired, True), render(live), rec, owned, 1)
    scoped = plan(render(desired, True), render(live), rec, owned, 1, only="".join(f"{k}\n" for k in sorted(only)))
    assert (full.returncode, scoped.returncode) == (0, 0), full.stderr + scoped.stderr
    assert lines(scoped.stdout) == [line for line in lines(full.stdout) if _service_of(line[2:]) in only]


# --- lvs_ipvs_proc_can_show ----------------------------------------------------------------------------------


def test_golden_rules_files_exist() -> None:
    assert len(GOLDEN_RULES) >= 3, f"no ipvsadm.rules under {CASES}/*/expected/*/etc"


@pytest.mark.parametrize("rules", GOLDEN_RULES, ids=lambda p: f"{p.relative_to(CASES).parts[0]}/{p.relative_to(CASES).parts[2]}")
def test_proc_can_show_the_golden_rules(rules: Path) -> None:
    """Every golden rules file can be read back from /proc, except where it uses what /proc does
    not show: scheduler flags (-b), a persistence engine (--pe), -o on an IPv6 service."""
    text = rules.read_text()
    assert text.strip(), rules
    hidden = any(" -b " in line or " --pe " in line or (" [" in line and line.endswith(" -o")) for line in text.splitlines())
    assert bash('lvs_ipvs_proc_can_show "$1"', rules).returncode == (1 if hidden else 0)


def test_proc_can_show_what_it_reproduced() -> None:
    """All of it but the firewall-mark service, whose family /proc does not show."""
    without_fwmark = "".join(line for line in SAVED_MIXED.read_text().splitlines(keepends=True) if " -f " not in line)
    assert bash('lvs_ipvs_proc_can_show /dev/stdin <<<"$1"', without_fwmark).returncode == 0
    assert bash('lvs_ipvs_proc_can_show "$1"', SAVED_MIXED).returncode == 1


CAN_SHOW = [
    pytest.param("-A -u 10.0.0.9:53 -s rr -o", True, id="ops-ipv4"),
    pytest.param("-A -t 10.0.0.9:443 -s lc -p 600 -M 255.255.0.0", True, id="persistence-mask"),
    pytest.param("-A -f 7 -s rr -p 300 -o", False, id="fwmark"),
    pytest.param("-a -t 10.0.0.1:80 -r 10.0.1.9:80 -i -w 1 --tun-type ipip", True, id="tun-ipip"),
    pytest.param("-A -t 10.0.0.9:80 -s sh -b sh-port", False, id="sched-flags"),
    pytest.param("-A -u 10.0.0.9:5060 -s rr -p 60 --pe sip", False, id="pe"),
    pytest.param("-A -u [2001:db8::1]:53 -s rr -o", False, id="ops-ipv6"),
    pytest.param("-a -t 10.0.0.1:80 -r 10.0.1.9:80 -i -w 1 --tun-type gue --tun-port 6080", False, id="tun-gue"),
    pytest.param("-a -t 10.0.0.1:80 -r 10.0.1.9:80 -g -w 1 -x 100 -y 50", False, id="thresholds"),
    pytest.param("-A -f 7 -6 -s rr", False, id="fwmark-ipv6"),
]


@pytest.mark.parametrize(("line", "shown"), CAN_SHOW)
def test_proc_can_show(tmp_path: Path, line: str, shown: bool) -> None:
    rules = tmp_path / "ipvsadm rules"
    rules.write_text(DESIRED + line + "\n" + f"-a {UDP} -r 10.0.1.2:53 -g -w 1\n")  # not the first line, nor the last
    assert bash('lvs_ipvs_proc_can_show "$1"', rules).returncode == (0 if shown else 1)


# --- lvs_learn_hz and lvs_kernel_hz ----------------------------------------------------------------------------


def test_learn_hz_from_the_recorded_table_and_read_it_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run dir" / "lvsgen"  # made by lvs_learn_hz
    run = bash('lvs_learn_hz "$1"', SAVED_MIXED, LVSGEN_RUN=run_dir, LVSGEN_PROC_IPVS=PROC_MIXED)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert (run_dir / "hz").read_text() == "250\n"
    run = bash('lvs_kernel_hz; printf "<%s>" "$LVS_HZ"', LVSGEN_RUN=run_dir)
    assert run.stdout == "<250>"


@pytest.mark.parametrize("hz", [100, 250, 300, 1000])
def test_learn_hz_of_each_kernel_hz(tmp_path: Path, hz: int) -> None:
    (tmp_path / "proc").write_text(PROC_HEADER + proc_service("TCP", "192.0.2.1", 443, "lc", persistent=(600 * hz, v4mask("255.255.255.255"))))
    (tmp_path / "saved").write_text("-A -t 192.0.2.1:443 -s lc -p 600\n")
    run = bash('lvs_learn_hz "$1"', tmp_path / "saved", LVSGEN_RUN=tmp_path / "run", LVSGEN_PROC_IPVS=tmp_path / "proc")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "hz").read_text() == f"{hz}\n"


def test_learn_hz_writes_nothing_in_a_dry_run_or_without_persistence(tmp_path: Path) -> None:
    run = bash('LVS_DRY_RUN=1; lvs_learn_hz "$1"', SAVED_MIXED, LVSGEN_RUN=tmp_path / "run", LVSGEN_PROC_IPVS=PROC_MIXED)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "run").exists()
    (tmp_path / "saved").write_text(DESIRED)
    run = bash('lvs_learn_hz "$1"', tmp_path / "saved", LVSGEN_RUN=tmp_path / "run", LVSGEN_PROC_IPVS=PROC_MIXED)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "run").exists()


def test_learn_hz_pairs_each_timeout_with_its_own_service(tmp_path: Path) -> None:
    learned = {}
    # Two services, -p 60 and -p 240, at HZ=250; /proc lists the 240 s one first. Which service awk
    # picks from the saved table depends on its hash order: try both names and both orders.
    for swap in (False, True):
        for saved_order in (1, -1):
            a60, a240 = ("10.0.0.2", "10.0.0.1") if swap else ("10.0.0.1", "10.0.0.2")
            (tmp_path / "proc").write_text(
                PROC_HEADER
                + proc_service("TCP", a240, 80, persistent=(240 * 250, v4mask("255.255.255.255")))
                + proc_service("TCP", a60, 80, persistent=(60 * 250, v4mask("255.255.255.255")))
            )
            (tmp_path / "saved").write_text("".join([f"-A -t {a60}:80 -s rr -p 60\n", f"-A -t {a240}:80 -s rr -p 240\n"][::saved_order]))
            run_dir = tmp_path / f"run {swap} {saved_order}"
            bash('lvs_learn_hz "$1"', tmp_path / "saved", LVSGEN_RUN=run_dir, LVSGEN_PROC_IPVS=tmp_path / "proc")
            learned[(swap, saved_order)] = (run_dir / "hz").read_text().strip()
    assert set(learned.values()) == {"250"}, learned


# --- the record ---------------------------------------------------------------------------------------------------

DUMP_REC = "for k in \"${!LVS_REC[@]}\"; do printf '%s\\0%s\\0' \"$k\" \"${LVS_REC[$k]}\"; done"


def rec_map(stdout: str) -> dict[str, str]:
    parts = stdout.split("\0")
    assert parts[-1] == "" and len(parts) % 2 == 1, stdout
    return dict(zip(parts[0:-1:2], parts[1:-1:2]))


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    return tmp_path / "state dir" / "lvsgen"  # does not exist yet


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("file\t/etc/sysctl.d/99-zz-lvsgen.conf", "file\t/etc/sysctl.d/99-zz-lvsgen.conf"),
        ("addr\t192.0.2.10/32\tlo", "addr\t192.0.2.10/32\tlo"),
        ("addr\t2001:db8::10/128\tlvs0", "addr\t2001:db8::10/128\tlvs0"),
        ("dummy\tlvs0", "dummy\tlvs0"),
        ("route\t-4\t192.0.2.1\teth0\tdefault via 192.0.2.254 dev eth0 proto static", "route\t-4"),
        ("route\t-6\tfe80::1\teth0\t", "route\t-6"),
        ("sysctl\tnet.ipv4.conf.all.arp_ignore\t0\t1", "sysctl\tnet.ipv4.conf.all.arp_ignore"),
        ("ipvs\t-t 192.0.2.10:80", "ipvs\t-t 192.0.2.10:80"),
        ("link\t/etc/systemd/system/multi-user.target.wants/lvsgen.service", "link\t/etc/systemd/system/multi-user.target.wants/lvsgen.service"),
    ],
)
def test_record_key(line: str, key: str) -> None:
    run = bash('lvs_record_key "$1"; printf "%s" "$LVS_KEY"', line)
    assert run.stdout == key


def test_record_add_is_on_disk_at_once(state: Path) -> None:
    """A run that dies before lvs_record_save still knows what it added."""
    run = bash(
        'lvs_record_add addr 192.0.2.10/32 lo; cat -- "$LVSGEN_STATE/record"; echo ---;'
        ' lvs_record_add route -4 192.0.2.1 eth0 ""; lvs_record_add addr 192.0.2.10/32 lo; exit 7',
        LVSGEN_STATE=state,
    )
    assert run.returncode == 7, run.stderr
    assert run.stdout == RECORD_HEADER + "addr\t192.0.2.10/32\tlo\n---\n"
    assert (state / "record").read_text() == RECORD_HEADER + "addr\t192.0.2.10/32\tlo\nroute\t-4\t192.0.2.1\teth0\t\n"


def test_record_add_appends_a_known_line_once(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "record").write_text(RECORD_HEADER + "dummy\tlvs0\n")
    run = bash("lvs_record_load; lvs_record_add dummy lvs0; lvs_record_add dummy lvs1; lvs_record_add dummy lvs1", LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    assert (state / "record").read_text() == RECORD_HEADER + "dummy\tlvs0\ndummy\tlvs1\n"


RECORD_FILE = (
    RECORD_HEADER
    + "sysctl\tnet.ipv4.ip_forward\t0\t1\n"
    + "\n"
    + "addr\t192.0.2.10/32\tlo\n"
    + "addr\t192.0.2.10/32\tlvs0\n"  # the same address on another device: another thing
    + "addr\t192.0.2.10/32\tlo\n"
    + "# a comment\n"
    + "route\t-4\t192.0.2.1\teth0\t\n"
    + "route\t-4\t192.0.2.2\teth0\tdefault via 192.0.2.1 dev eth0\n"  # same key: the last line wins
    + "sysctl\tnet.ipv4.ip_forward\t1\t0\n"
    + "ipvs\t-t 192.0.2.10:80\n"
    + "file\t/etc/lvsgen/ipvsadm.rules\n"
)
RECORD_LOADED = {
    "addr\t192.0.2.10/32\tlo": "addr\t192.0.2.10/32\tlo",
    "addr\t192.0.2.10/32\tlvs0": "addr\t192.0.2.10/32\tlvs0",
    "route\t-4": "route\t-4\t192.0.2.2\teth0\tdefault via 192.0.2.1 dev eth0",
    "sysctl\tnet.ipv4.ip_forward": "sysctl\tnet.ipv4.ip_forward\t1\t0",
    "ipvs\t-t 192.0.2.10:80": "ipvs\t-t 192.0.2.10:80",
    "file\t/etc/lvsgen/ipvsadm.rules": "file\t/etc/lvsgen/ipvsadm.rules",
}


def test_record_load_keeps_one_line_per_key(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "record").write_text(RECORD_FILE)
    run = bash("lvs_record_load; " + DUMP_REC, LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    assert rec_map(run.stdout) == RECORD_LOADED


def test_record_load_without_a_record_is_empty(state: Path) -> None:
    run = bash("LVS_REC[x]=y; lvs_record_load; " + DUMP_REC, LVSGEN_STATE=state)
    assert (run.returncode, run.stdout) == (0, "")
    assert not state.exists()


def test_record_save_writes_a_header_and_sorted_lines(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "record").write_text(RECORD_FILE)
    run = bash("lvs_record_load; lvs_record_drop \"$1\"; lvs_record_add dummy lvs0; lvs_record_save", "ipvs\t-t 192.0.2.10:80", LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    kept = {k: v for k, v in RECORD_LOADED.items() if not k.startswith("ipvs")} | {"dummy\tlvs0": "dummy\tlvs0"}
    assert (state / "record").read_text() == RECORD_HEADER + "".join(f"{line}\n" for line in sorted(kept.values()))
    assert sorted(p.name for p in state.iterdir()) == ["record"], "no temporary file left behind"
    run = bash("lvs_record_load; " + DUMP_REC, LVSGEN_STATE=state)
    assert rec_map(run.stdout) == kept, "what save wrote loads back the same"


def test_record_save_of_nothing_writes_nothing(state: Path) -> None:
    """Nothing dropped: nothing to rewrite (a run that changes nothing writes no file)."""
    run = bash("lvs_record_save", LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    assert not (state / "record").exists()
    run = bash("LVS_REC_DIRTY=1; lvs_record_save", LVSGEN_STATE=state)
    assert (state / "record").read_text() == RECORD_HEADER


def test_record_dry_run_writes_nothing(state: Path, tmp_path: Path) -> None:
    run = bash("LVS_DRY_RUN=1; lvs_record_add dummy lvs0; lvs_record_save", LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "state dir").exists()
    state.mkdir(parents=True)
    (state / "record").write_text(RECORD_FILE)
    run = bash("LVS_DRY_RUN=1; lvs_record_load; lvs_record_add dummy lvs0; lvs_record_drop \"$1\"; lvs_record_save", "route\t-4", LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    assert (state / "record").read_text() == RECORD_FILE
    assert sorted(p.name for p in state.iterdir()) == ["record"]


def test_record_load_keeps_a_last_line_without_newline(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "record").write_text(RECORD_HEADER + "dummy\tlvs0\naddr\t192.0.2.10/32\tlo")
    run = bash("lvs_record_load; " + DUMP_REC, LVSGEN_STATE=state)
    assert rec_map(run.stdout) == {"dummy\tlvs0": "dummy\tlvs0", "addr\t192.0.2.10/32\tlo": "addr\t192.0.2.10/32\tlo"}


# --- lvs_inspect_files and lvs_sync_files ------------------------------------------------------------


SYNC = 'LVS_HOST=h; lvs_inspect_files "$@"; lvs_sync_files "$@"; echo "changes=$LVS_CHANGES"'


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src, dest = tmp_path / "host folder", tmp_path / "root dir"
    (src / "etc" / "a").mkdir(parents=True)
    (src / "etc" / "a" / "one.conf").write_text("one\n\nend without newline")
    (src / "etc" / "two.sh").write_text("#!/bin/sh\necho two\n")
    return src, dest


def _sync_args(src: Path, dest: Path) -> list[str]:
    return [str(src / "etc/a/one.conf"), str(dest / "etc/a/one.conf"), "0644", str(src / "etc/two.sh"), str(dest / "etc/two.sh"), "0755"]


def test_sync_installs_missing_files_with_their_bytes_and_modes(tmp_path: Path) -> None:
    src, dest = _tree(tmp_path)
    run = bash(SYNC, *_sync_args(src, dest))
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("changes=2\n")
    for rel, mode in (("etc/a/one.conf", 0o644), ("etc/two.sh", 0o755)):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
        assert (dest / rel).stat().st_mode & 0o7777 == mode
    assert sorted(p.name for p in (dest / "etc").rglob("*")) == ["a", "one.conf", "two.sh"], "no temporary file left"


SUMS = (
    'PATH=$BIN:$PATH LVSGEN_RUN=$RUN; lvs_inspect_files "$@"; lvs_sums_save; '
    'for p in "$@"; do printf "%s %s\\n" "${LVS_SUM[$p]-none}" "$p"; done'
)


def _sums_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A bin folder with an md5sum that logs what it sums, and a run folder."""
    bindir, run, log = tmp_path / "bin dir", tmp_path / "run dir", tmp_path / "md5sum log"
    bindir.mkdir()
    run.mkdir()
    real = shutil.which("md5sum")
    (bindir / "md5sum").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >>"{log}"\nexec {real} "$@"\n')
    (bindir / "md5sum").chmod(0o755)
    return {"BIN": str(bindir), "RUN": str(run)}, log


def _logged(log: Path) -> list[str]:
    text = log.read_text() if log.exists() else ""
    log.unlink(missing_ok=True)
    return [x for x in lines(text) if x != "--"]


def test_sums_are_kept_per_boot_and_a_file_is_summed_again_only_once_it_changed(tmp_path: Path) -> None:
    env, log = _sums_env(tmp_path)
    a, b = tmp_path / "a file", tmp_path / "b file"
    a.write_text("one\n")
    b.write_text("two\n")
    later = str(int(time.time()) + 60)  # as if the sums were taken a minute after the writes
    first = bash(SUMS, a, b, LVS_NOW=later, **env)
    assert first.returncode == 0, first.stderr
    assert sorted(_logged(log)) == sorted([str(a), str(b)])
    want = [f"{hashlib.md5(p.read_bytes()).hexdigest()} {p}" for p in (a, b)]
    assert lines(first.stdout) == want
    again = bash(SUMS, a, b, LVS_NOW=later, **env)
    assert (again.returncode, lines(again.stdout), _logged(log)) == (0, want, []), "nothing read again"
    a.write_text("One\n")  # same size, other bytes
    changed = bash(SUMS, a, b, LVS_NOW=later, **env)
    assert _logged(log) == [str(a)]
    assert lines(changed.stdout) == [f"{hashlib.md5(a.read_bytes()).hexdigest()} {a}", want[1]]


def test_sums_taken_in_the_same_seconds_as_a_write_are_not_kept(tmp_path: Path) -> None:
    """A write in the same clock tick as the sum would not change the signature: such a sum
    is not trusted on the next run."""
    env, log = _sums_env(tmp_path)
    a = tmp_path / "a file"
    a.write_text("one\n")
    assert bash(SUMS, a, **env).returncode == 0  # now: the file was written this second
    assert _logged(log) == [str(a)]
    assert (Path(env["RUN"]) / "sums").read_text() == ""
    assert bash(SUMS, a, **env).returncode == 0
    assert _logged(log) == [str(a)], "summed again"


def test_sums_kept_in_a_dry_run_are_not_written(tmp_path: Path) -> None:
    env, log = _sums_env(tmp_path)
    a = tmp_path / "a file"
    a.write_text("one\n")
    run = bash("LVS_DRY_RUN=1; " + SUMS, a, LVS_NOW=str(int(time.time()) + 60), **env)
    assert run.returncode == 0, run.stderr
    assert not (Path(env["RUN"]) / "sums").exists()


@pytest.mark.parametrize("src_mode", [0o644, 0o664, 0o600])
def test_sync_copies_a_large_file_whole_with_its_mode(tmp_path: Path, src_mode: int) -> None:
    """Above LVS_BIG bytes a file is copied by cp instead of read by bash: same bytes, and the
    mode asked for whatever the source has; a temporary file an earlier run left is replaced."""
    src, dest = _tree(tmp_path)
    big = src / "etc" / "big.rules"
    big.write_text("".join(f"-a -t 198.51.100.{i % 250}:{i} -r 192.0.2.11:{i} -g -w 1\n" for i in range(7000)) + "no newline")
    big.chmod(src_mode)
    assert big.stat().st_size > 262144
    (dest / "etc").mkdir(parents=True)
    (dest / "etc" / "big.rules.lvsgen-new").write_text("left by a run that died")
    (dest / "etc" / "big.rules.lvsgen-new").chmod(0o600)
    for want in ("0644", "0755"):
        (dest / "etc" / "big.rules").unlink(missing_ok=True)
        run = bash(SYNC, big, dest / "etc" / "big.rules", want)
        assert run.returncode == 0, run.stderr
        assert (dest / "etc" / "big.rules").read_bytes() == big.read_bytes()
        assert (dest / "etc" / "big.rules").stat().st_mode & 0o7777 == int(want, 8)
        assert not (dest / "etc" / "big.rules.lvsgen-new").exists()


def test_sync_of_equal_files_changes_nothing(tmp_path: Path) -> None:
    src, dest = _tree(tmp_path)
    assert bash(SYNC, *_sync_args(src, dest)).returncode == 0
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.rglob("*")}
    run = bash(SYNC, *_sync_args(src, dest))
    assert (run.returncode, run.stdout) == (0, "changes=0\n"), run.stderr
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.rglob("*")} == before


def test_sync_rewrites_a_changed_file_and_fixes_a_changed_mode(tmp_path: Path) -> None:
    src, dest = _tree(tmp_path)
    assert bash(SYNC, *_sync_args(src, dest)).returncode == 0
    (dest / "etc/a/one.conf").write_text("one\n\nend without newlinX")  # same size, other bytes
    (dest / "etc/two.sh").chmod(0o700)
    run = bash(SYNC, *_sync_args(src, dest))
    assert run.returncode == 0, run.stderr
    assert "install -D -m 0644" in run.stdout and "chmod 0755" in run.stdout and run.stdout.endswith("changes=2\n")
    assert (dest / "etc/a/one.conf").read_bytes() == (src / "etc/a/one.conf").read_bytes()
    assert (dest / "etc/two.sh").stat().st_mode & 0o7777 == 0o755


def test_sync_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    src, dest = _tree(tmp_path)
    run = bash("LVS_DRY_RUN=1; " + SYNC, *_sync_args(src, dest))
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("would run: install") == 2 and run.stdout.endswith("changes=2\n")
    assert not dest.exists()


def test_sync_names_a_missing_source(tmp_path: Path) -> None:
    src, dest = _tree(tmp_path)
    (src / "etc/two.sh").unlink()
    run = bash(SYNC, *_sync_args(src, dest))
    assert run.returncode == 1
    assert "two.sh is missing from the host folder" in run.stderr


# --- lvs_copy_stage and lvs_copy: the boot copy, written early and renamed last -------------------

COPY_NAMES = ("setup.sh", "lvsgen.sh", "etc/a/one.conf", "etc/two.sh")
COPY = (
    'LVS_HOST=h; LVS_FILES=("etc/a/one.conf 0644" "etc/two.sh 0755"); paths=(); '
    'for n in setup.sh lvsgen.sh etc/a/one.conf etc/two.sh; do paths+=("$LVS_HERE/$n" "$LVSGEN_STATE/host/$n"); done; '
    'lvs_inspect_files "${paths[@]}"; lvs_copy_stage; echo "-- staged"; '
    '(cd "$LVSGEN_STATE" && find . | LC_ALL=C sort); echo "-- then"; '
)


def _copy_host(tmp_path: Path) -> dict[str, Path]:
    src, _ = _tree(tmp_path)
    (src / "setup.sh").write_text("#!/usr/bin/env bash\necho setup\n")
    (src / "setup.sh").chmod(0o755)
    (src / "lvsgen.sh").write_text("# the library\n")
    return {"LVS_HERE": src, "LVSGEN_STATE": tmp_path / "state dir"}


def _copy_bytes(env: dict[str, Path]) -> dict[str, bytes]:
    copy = env["LVSGEN_STATE"] / "host"
    return {n: (copy / n).read_bytes() for n in COPY_NAMES if (copy / n).exists()}


def test_first_boot_copy_is_staged_whole_and_renamed_last(tmp_path: Path) -> None:
    env = _copy_host(tmp_path)
    run = bash(COPY + 'lvs_copy; echo "changes=$LVS_CHANGES"', **env)
    assert run.returncode == 0, run.stderr
    staged, then = run.stdout.split("-- then\n")
    assert "./host.lvsgen-new/etc/a/one.conf" in staged and "./host\n" not in staged, "staged beside it, not yet in place"
    assert "+ cp --parents" not in staged and "+ cp --parents" in then, "said when it is renamed"
    assert then.endswith("changes=4\n")
    assert _copy_bytes(env) == {n: (env["LVS_HERE"] / n).read_bytes() for n in COPY_NAMES}
    copy = env["LVSGEN_STATE"] / "host"
    assert [(copy / n).stat().st_mode & 0o777 for n in COPY_NAMES] == [0o755, 0o644, 0o644, 0o755]
    assert not (env["LVSGEN_STATE"] / "host.lvsgen-new").exists()


def test_changed_boot_copy_files_are_staged_beside_the_old_and_renamed_last(tmp_path: Path) -> None:
    env = _copy_host(tmp_path)
    assert bash(COPY + "lvs_copy", **env).returncode == 0
    old = _copy_bytes(env)
    (env["LVS_HERE"] / "etc/two.sh").write_text("#!/bin/sh\necho 2\n")
    run = bash(COPY + '[[ $(< "$LVSGEN_STATE/host/etc/two.sh") == *"echo two"* ]] && echo "old bytes"; lvs_copy; echo "changes=$LVS_CHANGES"', **env)
    assert run.returncode == 0, run.stderr
    staged, then = run.stdout.split("-- then\n")
    assert "./host/etc/two.sh.lvsgen-new\n" in staged and "one.conf.lvsgen-new" not in staged
    assert then.startswith("old bytes\n"), "the copy the boot unit runs is untouched until the rename"
    assert "+ install -D -m 0755" in then and "+ install" not in staged and then.endswith("changes=1\n")
    assert _copy_bytes(env) == {**old, "etc/two.sh": b"#!/bin/sh\necho 2\n"}
    assert (env["LVSGEN_STATE"] / "host/etc/two.sh").stat().st_mode & 0o777 == 0o755
    assert not list(env["LVSGEN_STATE"].rglob("*.lvsgen-new"))


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("how", ["lvs_die 'the table'", "exit 1", "false"])
def test_a_run_that_fails_after_staging_keeps_the_last_good_copy_and_leaves_nothing(tmp_path: Path, first: bool, how: str) -> None:
    env = _copy_host(tmp_path)
    if not first:
        assert bash(COPY + "lvs_copy", **env).returncode == 0
        (env["LVS_HERE"] / "etc/two.sh").write_text("#!/bin/sh\necho 2\n")
    old = _copy_bytes(env)
    run = bash("set -e; " + COPY + how + "; lvs_copy", **env)
    assert run.returncode == 1
    assert ("lvs_copy_stage" not in run.stderr) and "-- staged" in run.stdout, run.stderr
    staged = run.stdout.split("-- then\n")[0]
    assert ("./host.lvsgen-new\n" if first else "./host/etc/two.sh.lvsgen-new\n") in staged, "something was staged"
    assert _copy_bytes(env) == old
    assert not list(env["LVSGEN_STATE"].rglob("*.lvsgen-new")), "the EXIT trap removed what was staged"


def test_dry_run_stages_nothing_and_says_what_the_copy_step_would_do(tmp_path: Path) -> None:
    env = _copy_host(tmp_path)
    run = bash("LVS_DRY_RUN=1; " + COPY + 'lvs_copy; echo "changes=$LVS_CHANGES"', **env)
    assert run.returncode == 0, run.stderr
    staged, then = run.stdout.split("-- then\n")
    assert "would run: cp --parents" in then and "would run" not in staged
    assert then.endswith("changes=4\n")
    assert not env["LVSGEN_STATE"].exists()


# --- lvs_sysctl_set and lvs_ip: changes without a process each ----------------------------------------


def test_sysctl_set_writes_the_value_and_prints_it_as_sysctl_would(tmp_path: Path) -> None:
    root = tmp_path / "proc sys"
    (root / "net/ipv4/conf/all").mkdir(parents=True)
    (root / "net/ipv4/conf/all/arp_ignore").write_text("0\n")
    run = bash('LVS_HOST=h; lvs_sysctl_set net.ipv4.conf.all.arp_ignore 1; echo "changes=$LVS_CHANGES"', LVSGEN_PROC_SYS=root)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "lvsgen[h]: + sysctl -w net.ipv4.conf.all.arp_ignore=1\nchanges=1\n"
    assert (root / "net/ipv4/conf/all/arp_ignore").read_text() == "1\n"


def test_sysctl_set_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "proc sys"
    (root / "net/ipv4").mkdir(parents=True)
    (root / "net/ipv4/ip_forward").write_text("0\n")
    run = bash("LVS_HOST=h; LVS_DRY_RUN=1; lvs_sysctl_set net.ipv4.ip_forward 1", LVSGEN_PROC_SYS=root)
    assert (run.returncode, run.stdout) == (0, "lvsgen[h]: would run: sysctl -w net.ipv4.ip_forward=1\n")
    assert (root / "net/ipv4/ip_forward").read_text() == "0\n"


def test_sysctl_set_names_a_write_the_kernel_refuses(tmp_path: Path) -> None:
    root = tmp_path / "proc sys"  # no such file: the write fails as a refused one would
    run = bash("LVS_HOST=h; lvs_step sysctls; lvs_sysctl_set net.ipv4.vs.nosuch 1", LVSGEN_PROC_SYS=root)
    assert run.returncode == 1
    assert "error in step sysctls: 'sysctl -w net.ipv4.vs.nosuch=1' failed" in run.stderr


def _fake_ip(tmp_path: Path, rc: int = 0) -> Path:
    """An 'ip' that records its arguments and stdin, and exits RC."""
    bin_dir = tmp_path / "fake bin"
    bin_dir.mkdir()
    (bin_dir / "ip").write_text(f'#!/bin/sh\necho "args: $*" >>"$IP_LOG"\ncat >>"$IP_LOG"\nexit {rc}\n')
    (bin_dir / "ip").chmod(0o755)
    return bin_dir


def test_ip_queue_runs_once_as_one_batch(tmp_path: Path) -> None:
    log = tmp_path / "ip log"
    bin_dir = _fake_ip(tmp_path)
    run = bash(
        'PATH=$BIN:$PATH; LVS_HOST=h; lvs_ip link add lvs0 type dummy; lvs_ip addr add 192.0.2.10/32 dev lvs0;'
        ' lvs_ip_flush; lvs_ip_flush; echo "changes=$LVS_CHANGES"',
        BIN=bin_dir, IP_LOG=log,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == (
        "lvsgen[h]: + ip link add lvs0 type dummy\nlvsgen[h]: + ip addr add 192.0.2.10/32 dev lvs0\nchanges=2\n"
    )
    assert log.read_text() == "args: -batch -\nlink add lvs0 type dummy\naddr add 192.0.2.10/32 dev lvs0\n", "one ip process"


def test_ip_queue_dry_run_runs_nothing(tmp_path: Path) -> None:
    log = tmp_path / "ip log"
    run = bash("PATH=$BIN:$PATH; LVS_HOST=h; LVS_DRY_RUN=1; lvs_ip addr del 192.0.2.10/32 dev lo; lvs_ip_flush",
               BIN=_fake_ip(tmp_path), IP_LOG=log)
    assert (run.returncode, run.stdout) == (0, "lvsgen[h]: would run: ip addr del 192.0.2.10/32 dev lo\n")
    assert not log.exists()


def test_ip_queue_failure_stops_the_run_and_lists_the_commands(tmp_path: Path) -> None:
    run = bash("PATH=$BIN:$PATH; LVS_HOST=h; lvs_step addresses; lvs_ip addr add 192.0.2.10/32 dev eth9; lvs_ip_flush; echo after",
               BIN=_fake_ip(tmp_path, rc=1), IP_LOG=tmp_path / "ip log")
    assert run.returncode == 1 and "after" not in run.stdout
    assert "error in step addresses: 'ip -batch -' failed with exit status 1" in run.stderr
    assert "addr add 192.0.2.10/32 dev eth9" in run.stderr


# --- lvs_sysctl_path ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        ("net.ipv4.vs.conntrack", "/proc/sys/net/ipv4/vs/conntrack"),
        ("net.ipv4.conf.all.arp_announce", "/proc/sys/net/ipv4/conf/all/arp_announce"),
        ("net.ipv4.conf.lvs-nat.rp_filter", "/proc/sys/net/ipv4/conf/lvs-nat/rp_filter"),
        ("net/ipv4/conf/eth0.100/arp_ignore", "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"),
        ("net/ipv4/conf/all/arp_ignore", "/proc/sys/net/ipv4/conf/all/arp_ignore"),
    ],
)
def test_sysctl_path(key: str, path: str) -> None:
    run = bash('LVS_PATH=stale; lvs_sysctl_path "$1"; printf "%s" "$LVS_PATH"', key)
    assert run.stdout == path


@pytest.mark.parametrize("interface", ["eth0", "eth0.100", "bond0.42", "tunl0", "enp1s0f1"])
def test_sysctl_path_of_the_keys_lvsgen_writes(interface: str) -> None:
    """lvsgen.state.sysctl_key picks the '/' form for a name with a dot; the library must read both."""
    from lvsgen.state import sysctl_key

    key = sysctl_key("net", "ipv4", "conf", interface, "arp_ignore")
    run = bash('lvs_sysctl_path "$1"; printf "%s" "$LVS_PATH"', key)
    assert run.stdout == f"/proc/sys/net/ipv4/conf/{interface}/arp_ignore"


# --- the plan straight from /proc, and its split form (what setup.sh runs) ------------------------------------


def _without_fwmark(text: str, proc: bool) -> str:
    if proc:  # a service line and its real servers: drop the FWM block
        out, skip = [], False
        for line in text.splitlines(keepends=True):
            if not line.startswith("  ->"):
                skip = line.startswith("FWM")
            if not skip:
                out.append(line)
        return "".join(out)
    return "".join(line for line in text.splitlines(keepends=True) if " -f " not in line)


@pytest.mark.parametrize("drain", [0, 1])
def test_plan_from_proc_equals_the_plan_from_ipvsadm_save(tmp_path: Path, drain: int) -> None:
    """The plan setup.sh makes from /proc/net/ip_vs in one awk process is the plan it would make
    from 'ipvsadm -S -n' of the same table: here against a desired table that differs from the
    recorded one in every way (edit, add, remove, drain)."""
    proc_file = tmp_path / "proc ip_vs"
    proc_file.write_text(_without_fwmark(PROC_MIXED.read_text(), proc=True))
    saved = tmp_path / "saved"
    saved.write_text(_without_fwmark(SAVED_MIXED.read_text(), proc=False))
    desired = tmp_path / "desired"
    desired.write_text(
        "-A -t 203.0.113.10:80 -s rr\n"
        "-a -t 203.0.113.10:80 -r 198.51.100.11:8080 -m -w 2\n"
        "-a -t 203.0.113.10:80 -r 198.51.100.13:8080 -m -w 1\n"
        "-A -t [2001:db8:1::100]:80 -s mh -p 60 -M 64\n"
        "-a -t [2001:db8:1::100]:80 -r [2001:db8:1::2]:80 -g -w 1\n"
        "-A -u 192.0.2.9:53 -s rr -o\n"
    )
    empty = tmp_path / "recorded"
    empty.write_text("")
    from_proc = bash('LVS_HZ=250; lvs_ipvs_plan "$1" "$2" "$3" 1 "$4" proc', desired, proc_file, empty, str(drain))
    from_save = bash('lvs_ipvs_plan "$1" "$2" "$3" 1 "$4" save', desired, saved, empty, str(drain))
    assert from_proc.returncode == 0 and from_save.returncode == 0, from_proc.stderr + from_save.stderr
    # The same commands in the same phases; within a phase, removals follow the live table's
    # order, which is the kernel's hash order in /proc and ipvsadm's sort in 'ipvsadm -S'.
    assert sorted(lines(from_proc.stdout)) == sorted(lines(from_save.stdout))
    assert [x[0] for x in lines(from_proc.stdout)] == [x[0] for x in lines(from_save.stdout)]
    assert "A -E -t 203.0.113.10:80 -s rr" in lines(from_proc.stdout)
    assert "R -D -t 203.0.113.20:443" in lines(from_proc.stdout)


@pytest.mark.parametrize(
    "only",
    [
        ["-t 203.0.113.10:80"],
        ["-t 203.0.113.20:443", "--sctp-service 203.0.113.10:3868"],
        ["-t [2001:db8:1::100]:80", "-u 192.0.2.9:53"],
        ["-t 203.0.113.10:80", "-t 203.0.113.20:443", "-t 203.0.113.21:443", "-t [2001:db8:1::100]:80", "-u 192.0.2.9:53"],
        ["-t 198.51.100.99:80"],  # in neither
    ],
    ids=["one", "two-v4", "v6-and-udp", "most", "none"],
)
def test_plan_from_proc_scoped_is_the_full_plan_restricted(tmp_path: Path, only: list[str]) -> None:
    """The verify reads /proc scoped: IPv4 services it did not touch are skipped by their /proc
    name, unconverted; it must answer for the touched ones exactly as the full read does."""
    proc_file = tmp_path / "proc ip_vs"
    proc_file.write_text(_without_fwmark(PROC_MIXED.read_text(), proc=True))
    desired = tmp_path / "desired"
    desired.write_text(
        "-A -t 203.0.113.10:80 -s rr\n"
        "-a -t 203.0.113.10:80 -r 198.51.100.11:8080 -m -w 2\n"
        "-A -t [2001:db8:1::100]:80 -s mh -p 60 -M 64\n"
        "-a -t [2001:db8:1::100]:80 -r [2001:db8:1::2]:80 -g -w 3\n"
        "-A -u 192.0.2.9:53 -s rr -o\n"
        "-A -t 203.0.113.21:443 -s lc -p 600\n"
        "-a -t 203.0.113.21:443 -r 192.0.2.5:443 -g -w 1\n"
    )
    (tmp_path / "recorded").write_text("")
    (tmp_path / "only").write_text("".join(f"{k}\n" for k in only))
    full = bash('LVS_HZ=250; lvs_ipvs_plan "$1" "$2" "$3" 1 1 proc', desired, proc_file, tmp_path / "recorded")
    scoped = bash('LVS_HZ=250; lvs_ipvs_plan "$1" "$2" "$3" 1 1 proc "" "$4"', desired, proc_file, tmp_path / "recorded", tmp_path / "only")
    assert (full.returncode, scoped.returncode) == (0, 0), full.stderr + scoped.stderr
    assert len(lines(full.stdout)) >= 5, "the full plan has work in several services"
    assert lines(scoped.stdout) == [x for x in lines(full.stdout) if _service_of(x[2:]) in only]


@pytest.mark.parametrize(
    "only",
    [["-t 203.0.113.10:80"], ["-t 203.0.113.21:443", "-t [2001:db8:1::100]:80"], ["-u 192.0.2.9:53", "-t 198.51.100.99:80"]],
    ids=["one", "v4-and-v6", "udp-and-absent"],
)
def test_diff_scoped_reads_only_the_touched_services_lines(tmp_path: Path, only: list[str]) -> None:
    """The verify after a change (lvs_ipvs_diff with ONLY): the file's lines are picked by the
    services' names, so that a service whose name begins like a touched one (port 8080 against
    80) is not read, and the plan equals the full plan restricted to ONLY; no image is used."""
    proc_file = tmp_path / "proc ip_vs"
    proc_file.write_text(_without_fwmark(PROC_MIXED.read_text(), proc=True))
    desired = tmp_path / "desired rules"
    desired.write_text(
        "-A -t 203.0.113.10:80 -s rr\n"
        "-a -t 203.0.113.10:80 -r 198.51.100.11:8080 -m -w 2\n"
        "-A -t 203.0.113.10:8080 -s rr\n"
        "-a -t 203.0.113.10:8080 -r 198.51.100.11:80 -m -w 1\n"
        "-A -t [2001:db8:1::100]:80 -s mh -p 60 -M 64\n"
        "-a -t [2001:db8:1::100]:80 -r [2001:db8:1::2]:80 -g -w 3\n"
        "-A -u 192.0.2.9:53 -s rr -o\n"
        "-A -t 203.0.113.21:443 -s lc -p 600\n"
        "-a -t 203.0.113.21:443 -r 192.0.2.5:443 -g -w 1\n"
    )
    (tmp_path / "only").write_text("".join(f"{k}\n" for k in only))
    env = dict(LVSGEN_PROC_IPVS=proc_file, LVSGEN_STATE=tmp_path / "state", LVSGEN_RUN=tmp_path / "run")
    script = 'LVS_HZ=250 LVS_IMAGE=image.proc LVS_HERE=/nonexistent; lvs_ipvs_diff "$1" 1 "$2" ${3:+"$3"}; echo "$LVS_COUNTS"'
    full = bash(script, desired, tmp_path / "full", **env)
    scoped = bash(script, desired, tmp_path / "scoped", tmp_path / "only", **env)
    assert (full.returncode, scoped.returncode) == (0, 0), full.stderr + scoped.stderr
    want = [x for x in lines((tmp_path / "full" / "plan").read_text()) if _service_of(x[2:]) in only]
    assert lines((tmp_path / "scoped" / "plan").read_text()) == want
    read = lines((tmp_path / "scoped" / "desired").read_text())
    assert read == [x for x in lines(desired.read_text()) if " ".join(x.split()[1:3]) in only]
    assert (tmp_path / "scoped" / "image").read_text() == ""


EARLY = (
    'LVS_HOST=lb LVS_RULES=${RULES:-rules} LVS_HERE="$1" LVS_DRY_RUN=1 LVS_HZ=250\n'
    'if [[ $2 == early ]]; then lvs_ipvs_plan_early; [[ -n $LVS_IPVS_PLAN_BG ]] || exit 7; fi\n'
    'lvs_ipvs_begin; echo "counts $LVS_COUNTS"\n'
)


def _early_host(tmp_path: Path, rules: str) -> dict:
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "rules").write_text(rules)
    (tmp_path / "run" / "plan" / "verify").mkdir(parents=True)
    proc_file = tmp_path / "proc ip_vs"
    proc_file.write_text(_without_fwmark(PROC_MIXED.read_text(), proc=True))
    return dict(LVSGEN_PROC_IPVS=proc_file, LVSGEN_STATE=tmp_path / "state", LVSGEN_RUN=tmp_path / "run")


def test_the_plan_made_in_the_background_is_the_plan(tmp_path: Path) -> None:
    """lvs_ipvs_plan_early plans a non-empty table in a background subshell while the files
    step installs the files; what lvs_ipvs_begin then takes from it is what planning in the foreground gives."""
    env = _early_host(tmp_path, "-A -t 203.0.113.10:80 -s rr\n-a -t 203.0.113.10:80 -r 198.51.100.11:8080 -m -w 5\n")
    plans = {}
    for how in ("early", "foreground"):
        run = bash(EARLY, tmp_path / "host", how, **env)
        assert run.returncode == 0, run.stderr
        plans[how] = (run.stdout, (tmp_path / "run" / "plan" / "plan").read_text())
    assert plans["early"] == plans["foreground"]
    out, plan = plans["early"]
    assert "lvsgen[lb]: would run: ipvsadm -E -t 203.0.113.10:80 -s rr\n" in out
    assert "R -d -t 203.0.113.10:80 -r 198.51.100.12:8080" in plan.splitlines() and "counts 1 1 1 0 0\n" in out


def test_a_plan_that_fails_in_the_background_stops_the_run_and_names_the_step(tmp_path: Path) -> None:
    env = _early_host(tmp_path, "")
    run = bash(EARLY, tmp_path / "host", "early", RULES="no such rules", **env)
    assert run.returncode == 1
    assert "error in step ipvs: cannot read" in run.stderr and "no such rules" in run.stderr, run.stderr
    assert "counts" not in run.stdout


def test_the_background_plan_holds_the_lock_until_it_ends(tmp_path: Path) -> None:
    """The run that started the plan may die while it runs (a failing files step): the plan
    keeps the run's lock (fd 9) until it ends, so that no other run plans into the same folder
    meanwhile. Here /proc is a FIFO, so the plan waits until the test writes the table."""
    env = _early_host(tmp_path, "-A -t 203.0.113.10:80 -s rr\n")
    fifo = tmp_path / "proc fifo"
    os.mkfifo(fifo)
    env["LVSGEN_PROC_IPVS"] = fifo
    lock = tmp_path / "run" / "setup.lock"
    start = bash('exec 9>"$LVSGEN_RUN/setup.lock"; flock -n 9 || exit 9\n'
                 'LVS_HOST=lb LVS_RULES=rules LVS_HERE="$1" LVS_HZ=250; lvs_ipvs_plan_early; exit 1', tmp_path / "host", **env)
    assert start.returncode == 1, start.stderr  # the run is gone, its plan is not
    held = subprocess.run(["flock", "-n", str(lock), "true"], capture_output=True, timeout=30)
    with open(fifo, "w") as proc:  # the table: an empty one
        proc.write(PROC_HEADER)
    deadline = time.monotonic() + 30
    while not (tmp_path / "run" / "plan" / "planned").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    free = subprocess.run(["flock", "-w", "30", str(lock), "true"], capture_output=True, timeout=60)
    assert held.returncode == 1, "the lock was free while the plan ran"
    assert free.returncode == 0, "the lock is free once the plan ended"
    assert (tmp_path / "run" / "plan" / "planned").read_text() == "250 0 1 0 0 1 0\n"


def test_diff_scoped_to_nothing_has_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "only").write_text("")
    run = bash('lvs_ipvs_diff /nonexistent 0 "$1" "$2"; echo "$LVS_COUNTS"', tmp_path / "d", tmp_path / "only",
               LVSGEN_PROC_IPVS=tmp_path / "no proc", LVSGEN_STATE=tmp_path / "state")
    assert (run.returncode, run.stdout) == (0, "0 0 0 0 0\n"), run.stderr


@pytest.mark.parametrize(
    ("desired", "proc_text", "hz", "status"),
    [
    pytest.param("-A -t 10.0.0.1:80 -s rr -b sh-port\n", "", "250", 5, id="desired-uses-what-proc-cannot-show"),
    pytest.param("-A -t 10.0.0.1:80 -s rr\n", "FWM  00000007 rr \n", "250", 4, id="proc-has-a-firewall-mark"),
    pytest.param("-A -t 10.0.0.1:80 -s rr\n", "TCP  0A000001:0050 rr persistent 15000 FFFFFFFF\n", "", 3, id="persistent-without-hz"),
    ],
)
@pytest.mark.parametrize("scoped", [False, True], ids=["full", "scoped"])
def test_plan_from_proc_falls_back_with_a_status(tmp_path: Path, desired: str, proc_text: str, hz: str, status: int, scoped: bool) -> None:
    """3, 4 and 5 tell setup.sh to read the table with ipvsadm -S -n instead; nothing is printed.
    The verify's scoped read too: a firewall-mark service, whose family /proc does not show, is
    never skipped as out of scope."""
    (tmp_path / "d").write_text(desired)
    (tmp_path / "p").write_text(PROC_HEADER + proc_text)
    (tmp_path / "r").write_text("")
    (tmp_path / "only").write_text("-t 10.0.0.1:80\n")
    only = '"" "$5"' if scoped else ""
    run = bash(f'LVS_HZ="$4"; lvs_ipvs_plan "$1" "$2" "$3" 1 1 proc {only}', tmp_path / "d", tmp_path / "p", tmp_path / "r", hz, tmp_path / "only")
    assert run.returncode == status, run.stderr
    assert run.stdout == ""


# --- the image: the rules file as /proc shows it, so that a table equal to it is not converted ---------------

IMG_HZ = 250


def _proc_of(table: Table, hz: int = IMG_HZ, active: int = 0) -> str:
    """TABLE as the kernel's /proc/net/ip_vs would print it (ActiveConn = ACTIVE everywhere)."""
    out = [PROC_HEADER]
    fwd = {"-g": "Route", "-m": "Masq", "-i": "Tunnel"}
    for key, (attrs, dests) in table.items():
        flag, where = key.split()
        addr, port = where.rsplit(":", 1)
        addr = addr.strip("[]")
        a = attrs.split()
        persistent = None
        if "-p" in a:
            mask = a[a.index("-M") + 1] if "-M" in a else None
            if ":" in addr:
                netmask = v6mask(int(mask) if mask is not None and mask.isdigit() else 128)
            else:
                netmask = v4mask(mask or "255.255.255.255")
            persistent = (int(a[a.index("-p") + 1]) * hz, netmask)
        out.append(proc_service({"-t": "TCP", "-u": "UDP"}[flag], addr, int(port), a[a.index("-s") + 1], persistent=persistent))
        for rs, ra in dests.items():
            raddr, rport = rs.rsplit(":", 1)
            out.append(proc_dest(raddr.strip("[]"), int(rport), fwd[ra.split()[0]], _weight(ra), active=active))
    return "".join(out)


def _image_plan(desired: str, proc_text: str, image: str | None, tmp: Path, *args: str, recorded: str = "") -> subprocess.CompletedProcess[str]:
    """lvs_ipvs_plan from /proc, with IMAGE (the text of an image file) or without one."""
    d, p, r, i = (tmp / n for n in ("desired rules", "proc ip_vs", "recorded", "image file"))
    d.write_text(desired)
    p.write_text(proc_text)
    r.write_text(recorded)
    key = hashlib.md5(desired.encode()).hexdigest()
    if image is not None:
        i.write_text(image)
    script = f'LVS_HZ={IMG_HZ} LVS_IMG_IN="$4" LVS_IMG_KEY="$5"; lvs_ipvs_plan "$1" "$2" "$3" ' + " ".join(args or ("1", "1", "proc"))
    return bash(script, d, p, r, i if image is not None else "", key)


IMG_DESIRED = "-A -t 192.0.2.1:80 -s wlc\n-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1\n-a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 2\n"
IMG_TABLE: Table = {"-t 192.0.2.1:80": ("-s wlc", {"198.51.100.1:80": "-g -w 1", "198.51.100.2:80": "-g -w 2"})}


def test_image_of_every_golden_table_reads_back_to_its_rules(tmp_path: Path) -> None:
    """Each KEY of an image, printed as /proc would, is what the engine's own converter reads
    back to its RULE: a live line that matches a key is that rules line."""
    images = sorted(CASES.glob("*/expected/*/ipvsadm.proc"))
    assert images, "the golden cases have images"
    for path in images:
        rules = (path.parent / "etc" / "lvsgen" / "ipvsadm.rules").read_text()
        head, *body = path.read_text().splitlines()
        assert head.endswith(" rules md5 " + hashlib.md5(rules.encode()).hexdigest()), path
        assert [b.split("\t")[1] for b in body] == rules.splitlines(), path
        proc = [PROC_HEADER]
        for b in body:
            key = re.sub(r"@([0-9]+)", lambda m: str(int(m.group(1)) * IMG_HZ), b.split("\t")[0])
            proc.append(("  " + key + " 0 0" if key.startswith("-> ") else key) + "\n")
        (tmp_path / "proc").write_text("".join(proc))
        run = bash(f'lvs_ipvs_proc {IMG_HZ}', LVSGEN_PROC_IPVS=tmp_path / "proc")
        assert (run.returncode, run.stdout) == (0, rules), (path, run.stderr)


@pytest.mark.parametrize(("line", "shown"), CAN_SHOW)
def test_image_is_made_only_for_what_proc_can_show(line: str, shown: bool) -> None:
    """The same rule as the engine's showable(): a table with anything else gets no image."""
    svc = line if line.startswith("-A ") else "-A " + " ".join(line.split()[1:3]) + " -s rr"
    rules = DESIRED.splitlines() + ([svc] if line.startswith("-A ") else [svc, line])
    assert (procimage.image(rules) is not None) == shown


def test_image_match_settles_it_without_converting(tmp_path: Path) -> None:
    image = procimage.text(IMG_DESIRED)
    assert image is not None
    split = tmp_path / "split"
    split.mkdir()
    run = _image_plan(IMG_DESIRED, _proc_of(IMG_TABLE, active=7), image, tmp_path, "1", "1", "proc", f'"{split}"')
    assert (run.returncode, run.stdout) == (0, "0 0 0 0 0\n"), run.stderr
    assert (split / "image").read_text() == "3 3 3\n", "every line matched by lookup"


def test_image_matches_the_table_a_real_kernel_printed(tmp_path: Path) -> None:
    """The recorded /proc of a real kernel (tests/host/dumps) against the image of what
    ipvsadm -S -n saved of the same table: every line matches by lookup."""
    saved = _without_fwmark(SAVED_MIXED.read_text(), proc=False)
    image = procimage.text(saved)
    assert image is not None
    split = tmp_path / "split"
    split.mkdir()
    run = _image_plan(saved, _without_fwmark(PROC_MIXED.read_text(), proc=True), image, tmp_path, "1", "1", "proc", f'"{split}"')
    assert (run.returncode, run.stdout) == (0, "0 0 0 0 0\n"), run.stderr
    n = len(saved.splitlines())
    assert (split / "image").read_text() == f"{n} {n} {n}\n"


@pytest.mark.parametrize("change", ["weight", "scheduler", "extra-server", "extra-service", "missing-server"])
def test_image_mismatch_gives_the_plan_of_the_full_conversion(tmp_path: Path, change: str) -> None:
    live = {k: (a, dict(d)) for k, (a, d) in IMG_TABLE.items()}
    if change == "weight":
        live["-t 192.0.2.1:80"][1]["198.51.100.2:80"] = "-g -w 7"
    elif change == "scheduler":
        live["-t 192.0.2.1:80"] = ("-s rr", live["-t 192.0.2.1:80"][1])
    elif change == "extra-server":
        live["-t 192.0.2.1:80"][1]["198.51.100.3:80"] = "-g -w 1"
    elif change == "extra-service":
        live["-t 192.0.2.9:80"] = ("-s rr", {"198.51.100.1:80": "-g -w 1"})
    else:
        del live["-t 192.0.2.1:80"][1]["198.51.100.1:80"]
    with_image = _image_plan(IMG_DESIRED, _proc_of(live), procimage.text(IMG_DESIRED), tmp_path)
    without = _image_plan(IMG_DESIRED, _proc_of(live), None, tmp_path)
    assert (with_image.returncode, without.returncode) == (0, 0), with_image.stderr + without.stderr
    assert with_image.stdout == without.stdout != ""


@pytest.mark.parametrize("spoil", ["other-sum", "no-hz", "no-tab", "server-first"])
def test_an_image_that_does_not_fit_is_not_used(tmp_path: Path, spoil: str) -> None:
    """An image of another file, a persistent service with no HZ known, a damaged file: the
    table is converted as if there were no image (the same plan), never misread."""
    desired = IMG_DESIRED.replace("-s wlc", "-s wlc -p 300")
    image = procimage.text(desired)
    assert image is not None
    head, *body = image.splitlines(keepends=True)
    if spoil == "other-sum":
        head = head[:-33] + "0" * 32 + "\n"
    elif spoil == "no-tab":
        body[1] = body[1].replace("\t", " ")
    elif spoil == "server-first":
        body = body[1:] + body[:1]
    live = {"-t 192.0.2.1:80": ("-s wlc -p 300", {"198.51.100.1:80": "-g -w 5"})}
    split = tmp_path / "split"
    split.mkdir()
    if spoil == "no-hz":
        _image_plan(desired, _proc_of(live), image, tmp_path, "1", "1", "proc")  # writes the files
        run = bash('LVS_HZ=0 LVS_IMG_IN="$4" LVS_IMG_KEY="$5"; lvs_ipvs_plan "$1" "$2" "$3" 1 1 proc "$6"',
                   tmp_path / "desired rules", tmp_path / "proc ip_vs", tmp_path / "recorded", tmp_path / "image file",
                   hashlib.md5(desired.encode()).hexdigest(), split)
        assert run.returncode == 3, "no HZ: read with ipvsadm -S -n, as without an image"
        assert not (split / "image").exists(), "the image was not used"
        return
    run = _image_plan(desired, _proc_of(live), head + "".join(body), tmp_path, "1", "1", "proc", f'"{split}"')
    assert run.returncode == 0, run.stderr
    assert not (split / "image").exists(), "the image was not used"
    assert "A -e -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1" in lines((split / "plan").read_text())


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    desired=tables(min_size=1),
    live=tables(),
    recorded=st.sets(st.sampled_from(SERVICE_KEYS)),
    owned=st.sampled_from([0, 1]),
    drain=st.sampled_from([0, 1]),
)
def test_image_plan_property_is_the_plan_without_it(desired: Table, live: Table, recorded: set[str], owned: int, drain: int) -> None:
    """For any live table and any desired one, the plan with the image is the plan without it,
    line for line; and the image is used whenever /proc can show the desired table."""
    text = render(desired)
    image = procimage.text(text)
    rec = "".join(f"{k}\n" for k in sorted(recorded))
    with tempfile.TemporaryDirectory(prefix="lvsgen image ") as tmp:
        args = (str(owned), str(drain), "proc")
        with_image = _image_plan(text, _proc_of(live, active=3), image, Path(tmp), *args, recorded=rec)
        without = _image_plan(text, _proc_of(live, active=3), None, Path(tmp), *args, recorded=rec)
    assert with_image.returncode == without.returncode, with_image.stderr + without.stderr
    assert with_image.stdout == without.stdout
    if with_image.returncode == 0:
        assert image is not None or "-M 255.255.255.0" in text, "every table here but a dotted IPv6 mask gets an image"


@pytest.mark.parametrize("text", ["-t 192.0.2.1:80\n-u 192.0.2.1:53\n", ""])
def test_state_file_is_renamed_into_place_from_next_to_itself(tmp_path: Path, text: str) -> None:
    """The record of IPVS services comes from /run: it is written next to its place and renamed
    (mv across file systems would copy over the old file). An empty source empties it."""
    state, src = tmp_path / "state dir", tmp_path / "run dir" / "services.after"
    src.parent.mkdir()
    src.write_text(text)
    state.mkdir()
    (state / "ipvs-services").write_text("-t 198.51.100.1:80\n")
    before = (state / "ipvs-services").stat().st_ino
    run = bash('LVSGEN_STATE=$STATE; lvs_state_file "$1" ipvs-services; echo done',
               src, STATE=state)
    assert run.stdout.endswith("done\n"), run.stderr
    assert (state / "ipvs-services").read_text() == text
    assert (state / "ipvs-services").stat().st_ino != before, "a new file renamed over the old one"
    assert sorted(p.name for p in state.iterdir()) == ["ipvs-services"], "no temporary file left"


def test_plan_split_writes_the_batches_what_to_print_and_the_record(tmp_path: Path) -> None:
    (tmp_path / "d").write_text(DESIRED)
    (tmp_path / "l").write_text(EXTRA_SVC.replace("-w 1\n", "-w 7\n", 1))
    (tmp_path / "r").write_text(f"{OTHER}\n-t 10.9.9.9:80\n")
    out = tmp_path / "split dir"
    out.mkdir()
    run = bash(
        'LVS_HOST=lb LVS_DRAIN_TIMEOUT=30; lvs_ipvs_plan "$1" "$2" "$3" 0 1 save "$4"',
        tmp_path / "d", tmp_path / "l", tmp_path / "r", out,
    )
    assert run.returncode == 0, run.stderr
    tagged = lines((out / "plan").read_text())
    a, w, r = (lines((out / t).read_text()) if (out / t).exists() else [] for t in "AWR")
    assert run.stdout == f"{len(a)} {len(w)} {len(r)} 0 1\n"
    assert tagged == [f"A {x}" for x in a] + [f"W {x}" for x in w] + [f"R {x}" for x in r]
    assert f"-D {OTHER}" in r and f"{OTHER} 10.0.2.1:80" in w
    show = lines((out / "show").read_text())
    assert len(show) == len(tagged)
    assert show[0] == f"lvsgen[lb]: + ipvsadm {a[0]}"
    assert f"lvsgen[lb]: waiting up to 30 s for the active connections of {OTHER} 10.0.2.1:80 to end" in show
    # The record: OTHER was lvsgen's and goes; the other recorded name stays.
    assert sorted(lines((out / "services.before").read_text())) == sorted([OTHER, "-t 10.9.9.9:80"])
    assert lines((out / "services.after").read_text()) == ["-t 10.9.9.9:80"]
    # What the verify reads back: every service an A or R line names, each once.
    assert sorted(lines((out / "touched").read_text())) == sorted({" ".join(x.split()[1:3]) for x in a + r})


def test_plan_split_records_added_services_before_they_are_added(tmp_path: Path) -> None:
    (tmp_path / "d").write_text(DESIRED)
    (tmp_path / "l").write_text("")
    (tmp_path / "r").write_text("")
    out = tmp_path / "split"
    out.mkdir()
    run = bash('LVS_DRY_RUN=1; lvs_ipvs_plan "$1" "$2" "$3" 1 1 save "$4"', tmp_path / "d", tmp_path / "l", tmp_path / "r", out)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[3] == "2"  # two services added
    assert sorted(lines((out / "services.before").read_text())) == sorted([TCP, UDP])
    assert all(line.startswith("lvsgen[") and "would run: ipvsadm -" in line for line in lines((out / "show").read_text()))


# --- the library and the generator agree on where things live on the host -------------------------------------


def test_state_folder_and_boot_copy_are_the_same_in_the_library_and_the_plan() -> None:
    """lvsgen.files names the boot copy (the unit's ExecStart, cloud-init's folder); lvsgen.sh
    writes it: a rename on one side only would leave the boot unit pointing at nothing."""
    from lvsgen import files as lvsgen_plan

    run = bash('printf "%s" "$LVSGEN_STATE"')
    assert run.stdout == lvsgen_plan.STATE_DIR
    assert lvsgen_plan.HOST_COPY == f"{lvsgen_plan.STATE_DIR}/host"
    units = sorted(ROOT.glob("tests/cases/*/expected/*/etc/systemd/system/lvsgen.service"))
    assert units, "no generated boot unit found"
    for unit in units:
        assert f"\nExecStart={lvsgen_plan.HOST_COPY}/setup.sh --boot\n" in unit.read_text(), unit


# --- the host's own network: checked, never changed ------------------------------------------------------------------


def _fake_ip_addrs(tmp_path: Path, addrs: str) -> Path:
    """An 'ip' whose 'ip -o addr show' prints ADDRS and that logs every other call."""
    bin_dir = tmp_path / "fake ip bin"
    bin_dir.mkdir()
    (bin_dir / "addrs").write_text(addrs)
    (bin_dir / "ip").write_text(
        '#!/bin/sh\nif [ "$1 $2" = "-o addr" ]; then cat "${0%/*}/addrs"; exit 0; fi\n'
        'echo "args: $*" >>"$IP_LOG"\ncat >>"$IP_LOG"\n'
    )
    (bin_dir / "ip").chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(("between", "reads"), [("", 1), ("sysctl", 2), ("ip", 2), ("chmod", 1)])
def test_addresses_are_read_again_only_after_something_may_have_changed_them(tmp_path: Path, between: str, reads: int) -> None:
    """Preflight reads them; the addresses step reuses that unless a sysctl was written or an
    ip command run since (each may take addresses away)."""
    bin_dir = _fake_ip_addrs(tmp_path, "1: lo    inet 192.0.2.11/24 scope global lo\n")
    (bin_dir / "ip").write_text(
        '#!/bin/sh\nif [ "$1 $2" = "-o addr" ]; then echo read >>"$IP_LOG.reads"; cat "${0%/*}/addrs"; exit 0; fi\n'
        'echo "args: $*" >>"$IP_LOG"\ncat >>"$IP_LOG"\n'
    )
    sysdir = tmp_path / "proc sys"
    (sysdir / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    step = {
        "": ":",
        "sysctl": "lvs_sysctl_set net.ipv4.ip_forward 1 >/dev/null",
        "ip": "lvs_ip link set dev lo up >/dev/null; lvs_ip_flush",
        "chmod": 'lvs_run chmod 0644 -- "$F" >/dev/null',
    }[between]
    run = bash(
        f"PATH=$BIN:$PATH; LVS_HOST=h; LVSGEN_PROC_SYS=$SYS; LVS_ADDRESSES=('192.0.2.11/24 lo'); lvs_read_addrs; {step}; lvs_addresses; echo done",
        BIN=bin_dir, IP_LOG=tmp_path / "log", SYS=sysdir, F=tmp_path / "f",
    )
    assert run.stdout.endswith("done\n"), run.stdout + run.stderr
    assert lines((tmp_path / "log.reads").read_text()) == ["read"] * reads


def test_preflight_reports_a_missing_nic_and_a_missing_host_address_at_once(tmp_path: Path) -> None:
    """Every problem at once, before any change: the NIC that does not exist, and the host's
    own address that its network configuration has not put there (lvsgen does not add it)."""
    run = bash(
        "PATH=$BIN:$PATH; LVS_HOST=h; LVS_HOSTNAME=$(uname -n); LVS_RULES=; LVS_UP=(); LVS_NOARP=(); LVS_DUMMIES=();"
        " LVS_NICS=(lo no-such-nic9); LVS_HOST_ADDRESSES=('192.0.2.11/24 lo' '192.0.2.12/24 no-such-nic9');"
        " LVSGEN_RUN=$RUNDIR lvs_preflight; echo passed",
        BIN=_fake_ip_addrs(tmp_path, "1: lo    inet 127.0.0.1/8 scope host lo\n"), IP_LOG=tmp_path / "log", RUNDIR=tmp_path / "run",
    )
    assert run.returncode == 1 and "passed" not in run.stdout
    assert "device 'no-such-nic9' does not exist on this host" in run.stderr
    assert "lo does not have the host's address 192.0.2.11/24" in run.stderr
    # the missing device is named once, not again for its address
    assert "192.0.2.12/24" not in run.stderr
    assert not (tmp_path / "log").exists(), "preflight changed something"


def test_preflight_passes_when_the_host_address_is_there(tmp_path: Path) -> None:
    run = bash(
        "PATH=$BIN:$PATH; LVS_HOST=h; LVS_HOSTNAME=$(uname -n); LVS_RULES=; LVS_UP=(); LVS_NOARP=(); LVS_DUMMIES=();"
        " LVS_NICS=(lo); LVS_HOST_ADDRESSES=('192.0.2.11/24 lo'); LVSGEN_RUN=$RUNDIR lvs_preflight 2>&1; echo passed",
        BIN=_fake_ip_addrs(tmp_path, "1: lo    inet 192.0.2.11/24 scope global lo\n"), IP_LOG=tmp_path / "log", RUNDIR=tmp_path / "run",
    )
    if os.geteuid() != 0:
        pytest.skip("preflight refuses to run as a user, rightly")
    assert run.stdout.endswith("passed\n"), run.stdout + run.stderr


def test_early_boot_touches_only_lvsgens_own_devices(tmp_path: Path) -> None:
    """--boot runs before the network: it brings up lvs0 and puts addresses on lvs0 and lo,
    and leaves the NIC, which is not configured yet, to the network manager."""
    log = tmp_path / "log"
    run = bash(
        "PATH=$BIN:$PATH; LVS_HOST=h; LVS_BOOT=1; LVS_DUMMIES=(lvs0); LVS_NOARP=(); LVS_UP=(eth0 lvs0);"
        " LVS_LINKS=([lvs0]=,); LVSGEN_STATE=$STATE;"
        " LVS_ADDRESSES=('192.0.2.11/24 eth0' '192.0.2.100/32 lvs0' '2001:db8::100/128 eth0' '192.0.2.101/32 lo');"
        " lvs_record_load; lvs_devices; lvs_addresses",
        BIN=_fake_ip_addrs(tmp_path, ""), IP_LOG=log, STATE=tmp_path / "state",
    )
    assert run.returncode == 0, run.stderr
    assert log.read_text() == (
        "args: -batch -\nlink set dev lvs0 up\n"
        "args: -batch -\naddr add 192.0.2.100/32 dev lvs0\naddr add 192.0.2.101/32 dev lo\n"
    )


def test_early_boot_skips_a_sysctl_of_a_nic_that_is_not_there_yet(tmp_path: Path) -> None:
    proc = tmp_path / "proc sys"
    (proc / "net/ipv4/conf/all").mkdir(parents=True)
    (proc / "net/ipv4/conf/all/arp_ignore").write_text("0\n")
    script = ("LVS_HOST=h; LVS_BOOT=$BOOT; LVSGEN_STATE=$STATE; LVSGEN_PROC_SYS=$PROC;"
              " LVS_SYSCTLS=('net.ipv4.conf.all.arp_ignore 1' 'net.ipv4.conf.eth0.arp_ignore 1'); lvs_record_load; lvs_sysctls")
    run = bash(script, BOOT="1", STATE=tmp_path / "state", PROC=proc)
    assert run.returncode == 0, run.stderr
    assert (proc / "net/ipv4/conf/all/arp_ignore").read_text() == "1\n"
    # a normal run (or --boot-network) needs the key: the NIC must exist by then
    run = bash(script, BOOT="0", STATE=tmp_path / "state", PROC=proc)
    assert run.returncode == 1 and "sysctl net.ipv4.conf.eth0.arp_ignore does not exist" in run.stderr


def test_removal_never_deletes_the_hosts_own_address(tmp_path: Path) -> None:
    """A record from an older lvsgen that added the host's address: the address stays, only
    the record line goes; a stale VIP is deleted."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "record").write_text(RECORD_HEADER + "addr\t192.0.2.11/24\teth0\naddr\t192.0.2.100/32\teth0\n")
    log = tmp_path / "log"
    run = bash(
        "PATH=$BIN:$PATH; LVS_HOST=h; LVSGEN_STATE=$STATE; LVS_ADDRESSES=('192.0.2.100/32 lvs0'); LVS_DUMMIES=(lvs0);"
        " LVS_HOST_ADDRESSES=('192.0.2.11/24 eth0'); LVS_ROUTES=(); LVS_SYSCTLS=(); LVS_FILES=(); LVS_UNITS=();"
        " lvs_record_load; lvs_read_addrs; lvs_remove_stale; lvs_ip_flush; lvs_record_save",
        BIN=_fake_ip_addrs(tmp_path, "2: eth0    inet 192.0.2.11/24 scope global eth0\n2: eth0    inet 192.0.2.100/32 scope global eth0\n"),
        IP_LOG=log, STATE=state,
    )
    assert run.returncode == 0, run.stderr
    assert log.read_text() == "args: -batch -\naddr del 192.0.2.100/32 dev eth0\n"
    assert "192.0.2.11/24" in (state / "record").read_text() and "192.0.2.100/32\teth0" not in (state / "record").read_text()


# --- an empty table is loaded from the file as it is --------------------------------------------------------


@pytest.mark.parametrize(
    "proc, empty",
    [
        (PROC_HEADER, True),
        (PROC_HEADER + "TCP  C0000201:0050 rr \n", False),
        (PROC_HEADER + "FWM  00000007 rr \n", False),
        (None, False),  # ip_vs not loaded: nothing to read, so not known to be empty
    ],
)
def test_an_empty_table_is_three_lines_of_header(tmp_path: Path, proc: str | None, empty: bool) -> None:
    path = tmp_path / "ip_vs"
    if proc is not None:
        path.write_text(proc)
    run = bash("lvs_ipvs_empty", LVSGEN_PROC_IPVS=path)
    assert run.returncode == (0 if empty else 1), run.stderr


@pytest.mark.parametrize("dry", [0, 1])
def test_loading_an_empty_table_plans_the_whole_file_and_records_its_services(tmp_path: Path, dry: int) -> None:
    desired = tmp_path / "desired rules"
    desired.write_text(DESIRED)
    state = tmp_path / "state"
    state.mkdir()
    (state / "ipvs-services").write_text("-t 10.9.9.9:80\n")
    out = tmp_path / "plan"
    run = bash(
        'LVS_HOST=lb LVS_DRY_RUN=$2; lvs_ipvs_load "$1" "$3" && printf "%s\\n" "$LVS_COUNTS"',
        desired, str(dry), out, LVSGEN_STATE=state,
    )
    assert run.returncode == 0, run.stderr
    services = [" ".join(x.split()[1:3]) for x in lines(DESIRED) if x.startswith("-A ")]
    dests = [x for x in lines(DESIRED) if x.startswith("-a ")]
    assert run.stdout == f"{len(services) + len(dests)} 0 0 {len(services)} 0\n"
    verb = "would run: ipvsadm -R" if dry else "+ ipvsadm -R"
    assert lines((out / "show").read_text()) == [
        f"lvsgen[lb]: {verb} < {desired} (the table is empty: {len(services)} service(s), {len(dests)} real server(s))"
    ]
    assert sorted(lines((out / "services.before").read_text())) == sorted(services + ["-t 10.9.9.9:80"])


def test_loading_an_empty_table_forgets_an_earlier_plans_waits_and_removals(tmp_path: Path) -> None:
    """A run that removed a real server, then a flushed table (ipvsadm -C, ip_vs reloaded) in
    the same boot: the next run loads the file and must not replay the old -d line."""
    desired = tmp_path / "desired"
    desired.write_text(DESIRED)
    out = tmp_path / "plan"
    out.mkdir()
    (out / "W").write_text("-t 10.0.0.5:80 10.0.0.11:80\n")
    (out / "R").write_text("-d -t 10.0.0.5:80 -r 10.0.0.11:80\n")
    run = bash('LVS_HOST=lb LVS_DRY_RUN=0; lvs_ipvs_load "$1" "$2"', desired, out, LVSGEN_STATE=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (out / "W").read_text() == "" and (out / "R").read_text() == ""


@pytest.mark.parametrize("extra", ["# a comment\n", "\n", "ipvsadm -A -t 10.0.0.5:80 -s rr\n"])
def test_a_file_with_other_lines_is_left_to_the_plan(tmp_path: Path, extra: str) -> None:
    desired = tmp_path / "d"
    desired.write_text(extra + DESIRED)
    run = bash('LVS_HOST=lb LVS_DRY_RUN=0; lvs_ipvs_load "$1" "$2"', desired, tmp_path / "plan", LVSGEN_STATE=tmp_path)
    assert run.returncode != 0


# --- IPVS timeouts (ipvsadm --set), against a fake ipvsadm that keeps them in a file ----------------------------


def _fake_ipvsadm(tmp_path: Path, now: str) -> Path:
    bin_dir = tmp_path / "fake ipvsadm"
    bin_dir.mkdir()
    (tmp_path / "timeouts").write_text(now + "\n")
    (bin_dir / "ipvsadm").write_text(
        "#!/bin/bash\n"
        'state="$(dirname "$0")/../timeouts"\n'
        'read -r -a t <"$state"\n'
        'if [[ $1 == -L && $2 == --timeout ]]; then echo "Timeout (tcp tcpfin udp): ${t[*]}"; exit 0; fi\n'
        'if [[ $1 == --set ]]; then shift; for i in 0 1 2; do v=${@:i+1:1}; ((v == 0)) || t[i]=$v; done;'
        ' echo "${t[*]}" >"$state"; echo "--set $*" >>"$state.log"; exit 0; fi\n'
        "exit 2\n"
    )
    (bin_dir / "ipvsadm").chmod(0o755)
    return bin_dir


TIMEOUTS = 'PATH=$BIN:$PATH; LVS_HOST=lb; LVS_DRY_RUN=${DRY:-0}; LVSGEN_STATE=$STATE; lvs_record_load; '


@pytest.mark.parametrize(
    "now, want, after, ran",
    [
        ("900 120 300", "60 0 0", "60 120 300", True),
        ("60 120 300", "60 0 0", "60 120 300", False),  # 0: the kernel's value, whatever it is
        ("900 120 300", "900 120 300", "900 120 300", False),
        ("900 120 300", "7200 30 60", "7200 30 60", True),
    ],
)
def test_timeouts_are_set_only_when_they_differ_and_recorded(tmp_path: Path, now: str, want: str, after: str, ran: bool) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_ipvsadm(tmp_path, now)
    state = tmp_path / "state"
    run = bash(TIMEOUTS + 'LVS_TIMEOUTS=$1; lvs_timeouts; echo "changes=$LVS_CHANGES"', want,
               BIN=bin_dir, STATE=state, LVSGEN_PROC_IPVS=proc)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "timeouts").read_text().split() == after.split()
    assert ("+ ipvsadm --set " + after in run.stdout) == ran, run.stdout  # all three, as they must be
    assert run.stdout.endswith(f"changes={int(ran)}\n")
    record = (state / "record").read_text() if (state / "record").exists() else ""
    assert (f"timeouts\tset\t{now}\t{after}\n" in record) == ran, record


def test_timeouts_put_back_when_the_file_drops_them(tmp_path: Path) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_ipvsadm(tmp_path, "900 120 300")
    state = tmp_path / "state"
    env = {"BIN": bin_dir, "STATE": state, "LVSGEN_PROC_IPVS": proc}
    for want in ("60 0 0", "30 0 20"):  # two changes: the host's own values are kept from the first
        assert bash(TIMEOUTS + 'LVS_TIMEOUTS=$1; lvs_timeouts', want, **env).returncode == 0
    assert (tmp_path / "timeouts").read_text().split() == ["30", "120", "20"]
    dry = bash(TIMEOUTS + "LVS_TIMEOUTS=; lvs_remove_stale", DRY="1", **env)
    assert dry.returncode == 0 and "would run: ipvsadm --set 900 120 300" in dry.stdout, dry.stdout + dry.stderr
    run = bash(TIMEOUTS + "LVS_TIMEOUTS=; lvs_remove_stale; lvs_record_save", **env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "timeouts").read_text().split() == ["900", "120", "300"]
    assert "timeouts" not in (state / "record").read_text()


def test_a_timeout_the_file_stops_giving_goes_back_to_the_hosts_own(tmp_path: Path) -> None:
    """{"tcp": 60}, then {"udp": 20}: tcp is no longer the file's, so it is the host's 900 again
    (not lvsgen's 60 forever, or 900 only after the next boot)."""
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_ipvsadm(tmp_path, "900 120 300")
    env = {"BIN": bin_dir, "STATE": tmp_path / "state", "LVSGEN_PROC_IPVS": proc}
    assert bash(TIMEOUTS + "LVS_TIMEOUTS='60 0 0'; lvs_timeouts; lvs_record_save", **env).returncode == 0
    assert (tmp_path / "timeouts").read_text().split() == ["60", "120", "300"]
    run = bash(TIMEOUTS + "LVS_TIMEOUTS='0 0 20'; lvs_timeouts; lvs_record_save", **env)
    assert run.returncode == 0 and "+ ipvsadm --set 900 120 20" in run.stdout, run.stdout + run.stderr
    assert (tmp_path / "timeouts").read_text().split() == ["900", "120", "20"]
    again = bash(TIMEOUTS + "LVS_TIMEOUTS='0 0 20'; lvs_timeouts", **env)
    assert again.returncode == 0 and "--set" not in again.stdout, again.stdout


def test_timeouts_changed_by_hand_since_are_left_alone_on_removal(tmp_path: Path) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_ipvsadm(tmp_path, "900 120 300")
    state = tmp_path / "state"
    env = {"BIN": bin_dir, "STATE": state, "LVSGEN_PROC_IPVS": proc}
    assert bash(TIMEOUTS + "LVS_TIMEOUTS='60 0 0'; lvs_timeouts", **env).returncode == 0
    (tmp_path / "timeouts").write_text("45 120 300\n")  # an admin's ipvsadm --set since
    run = bash(TIMEOUTS + "LVS_TIMEOUTS=; lvs_remove_stale; lvs_record_save", **env)
    assert run.returncode == 0 and "--set" not in run.stdout, run.stdout
    assert (tmp_path / "timeouts").read_text().split() == ["45", "120", "300"]


def test_timeouts_the_kernel_does_not_take_stop_the_run(tmp_path: Path) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_ipvsadm(tmp_path, "900 120 300")
    script = (bin_dir / "ipvsadm").read_text().replace('echo "${t[*]}" >"$state"', ":")  # --set changes nothing
    (bin_dir / "ipvsadm").write_text(script)
    run = bash(TIMEOUTS + "LVS_TIMEOUTS='60 0 0'; lvs_step timeouts; lvs_timeouts",
               BIN=bin_dir, STATE=tmp_path / "state", LVSGEN_PROC_IPVS=proc)
    assert run.returncode != 0
    assert "error in step timeouts" in run.stderr and "900 120 300 after 'ipvsadm --set 60 120 300', not 60 120 300" in run.stderr


# --- connection sync daemons, against a fake ipvsadm that keeps them in a file -----------------------------------


def _fake_sync_ipvsadm(tmp_path: Path, running: str = "") -> Path:
    bin_dir = tmp_path / "fake sync"
    bin_dir.mkdir()
    (tmp_path / "daemons").write_text(running)
    (bin_dir / "ipvsadm").write_text(
        "#!/bin/bash\n"
        'state="$(dirname "$0")/../daemons"\n'
        'echo "$*" >>"$state.log"\n'
        'if [[ $1 == -L && $2 == --daemon ]]; then cat "$state"; exit 0; fi\n'
        'if [[ $1 == --stop-daemon ]]; then grep -v "^$2 " "$state" >"$state.new"; mv "$state.new" "$state"; exit 0; fi\n'
        'if [[ $1 == --start-daemon ]]; then\n'
        '  s=$2; shift 2; dev= id=0 max=1472\n'
        '  while (($#)); do case $1 in --mcast-interface) dev=$2;; --syncid) id=$2;; --sync-maxlen) max=$2;; esac; shift 2; done\n'
        '  if grep -q "^$s " "$state"; then echo "Daemon has already run" >&2; exit 255; fi\n'
        '  echo "$s sync daemon (mcast=$dev, syncid=$id, maxlen=$max, group=224.0.0.81, port=8848, ttl=1)" >>"$state"; exit 0\n'
        "fi\n"
        "exit 2\n"
    )
    (bin_dir / "ipvsadm").chmod(0o755)
    return bin_dir


SYNCD = 'PATH=$BIN:$PATH; LVS_HOST=lb; LVS_DRY_RUN=${DRY:-0}; LVSGEN_STATE=$STATE; lvs_record_load; '


@pytest.mark.parametrize(
    "running, want, calls",
    [
        ("", ["master eth0 5 0"], ["--start-daemon master --mcast-interface eth0 --syncid 5"]),
        ("master sync daemon (mcast=eth0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n", ["master eth0 5 0"], []),
        ("master sync daemon (mcast=eth0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n", ["master eth0 5 1400"],
         ["--stop-daemon master", "--start-daemon master --mcast-interface eth0 --syncid 5 --sync-maxlen 1400"]),
        ("master sync daemon (mcast=eth0, syncid=50, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n", ["master eth0 5 0"],
         ["--stop-daemon master", "--start-daemon master --mcast-interface eth0 --syncid 5"]),
        ("master sync daemon (mcast=eth0, syncid=5)\n", ["master eth0 5 0"], []),  # an older ipvsadm's line
        ("", ["master eth0 5 0", "backup eth1 7 0"],
         ["--start-daemon master --mcast-interface eth0 --syncid 5", "--start-daemon backup --mcast-interface eth1 --syncid 7"]),
    ],
)
def test_sync_daemons_start_only_when_not_running_as_described(tmp_path: Path, running: str, want: list[str], calls: list[str]) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_sync_ipvsadm(tmp_path, running)
    state = tmp_path / "state"
    run = bash(SYNCD + 'LVS_SYNC=("$@"); lvs_sync; echo "changes=$LVS_CHANGES"', *want, BIN=bin_dir, STATE=state, LVSGEN_PROC_IPVS=proc)
    assert run.returncode == 0, run.stderr
    log = (tmp_path / "daemons.log").read_text().splitlines()
    assert [c for c in log if not c.startswith("-L")] == calls
    assert run.stdout.endswith(f"changes={len(calls)}\n")
    for w in want:
        state_name = w.split()[0]
        assert (f"sync\t{state_name}\n" in ((state / "record").read_text() if (state / "record").exists() else "")) == bool(calls)


def test_a_sync_daemon_the_file_drops_is_stopped(tmp_path: Path) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_sync_ipvsadm(tmp_path)
    state = tmp_path / "state"
    env = {"BIN": bin_dir, "STATE": state, "LVSGEN_PROC_IPVS": proc}
    assert bash(SYNCD + "LVS_SYNC=('master eth0 5 0' 'backup eth0 5 0'); lvs_sync", **env).returncode == 0
    run = bash(SYNCD + "LVS_SYNC=('master eth0 5 0'); lvs_remove_stale; lvs_record_save", **env)
    assert run.returncode == 0, run.stderr
    assert "+ ipvsadm --stop-daemon backup" in run.stdout
    assert (tmp_path / "daemons").read_text().startswith("master sync daemon (mcast=eth0, syncid=5,")
    assert "backup" not in (tmp_path / "daemons").read_text() and "sync\tbackup" not in (state / "record").read_text()


def test_a_sync_daemon_that_does_not_start_as_described_stops_the_run(tmp_path: Path) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER)
    bin_dir = _fake_sync_ipvsadm(tmp_path)
    script = (bin_dir / "ipvsadm").read_text().replace("syncid=$id,", "syncid=0,")  # a kernel that ignores --syncid
    (bin_dir / "ipvsadm").write_text(script)
    run = bash(SYNCD + "LVS_SYNC=('master eth0 5 0'); lvs_step sync-daemon; lvs_sync", BIN=bin_dir, STATE=tmp_path / "s", LVSGEN_PROC_IPVS=proc)
    assert run.returncode != 0
    assert "error in step sync-daemon: the master sync daemon is not running as described" in run.stderr


# --- conn_tab_bits: read by ip_vs at load time only ---------------------------------------------------------------


@pytest.mark.parametrize(
    "have, loaded_now, said",
    [
        ("14", True, ""),
        ("14", False, ""),
        ("12", True, "ip_vs was loaded with conn_tab_bits=12, not 14: the kernel lowers a size the memory cannot hold"),
        ("12", False, "ip_vs runs with conn_tab_bits=12; 14 (/etc/modprobe.d/lvsgen.conf) takes effect at the next boot"),
        (None, False, ""),  # a dry run before ip_vs is loaded
    ],
)
def test_conn_tab_bits_says_when_the_size_differs_and_changes_nothing(tmp_path: Path, have: str | None, loaded_now: bool, said: str) -> None:
    sys_module = tmp_path / "sys module"
    if have is not None:
        (sys_module / "ip_vs" / "parameters").mkdir(parents=True)
        (sys_module / "ip_vs" / "parameters" / "conn_tab_bits").write_text(have + "\n")
    run = bash(
        'LVS_HOST=lb LVS_DRY_RUN=0 LVS_CONN_TAB_BITS=14; lvs_conn_tab_bits "$@"; echo "changes=$LVS_CHANGES"',
        *(["dummy", "ip_vs"] if loaded_now else []),
        LVSGEN_SYS_MODULE=sys_module,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("changes=0\n")
    assert (said in run.stdout) if said else run.stdout == "changes=0\n", run.stdout


# --- connection thresholds: the listing against the thresholds file -------------------------------------------

LISTING = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn
  -> RemoteAddress:Port
TCP  192.0.2.1:80 rr
  -> 192.0.2.11:80                100        50         0          0
  -> 192.0.2.12:80                0          0          3          1
UDP  [2001:db8::1]:53 mh (mh-port) persistent 30 mask 64 ops
  -> [2001:db8::11]:53            0          0          0          0
TCP  192.0.2.9:80 rr
  -> 192.0.2.99:80                7          0          0          0
"""
T_RULES = """\
-A -t 192.0.2.1:80 -s rr
-a -t 192.0.2.1:80 -r 192.0.2.11:80 -g -w 1
-a -t 192.0.2.1:80 -r 192.0.2.12:80 -i -w 3 --tun-type ipip
-A -u [2001:db8::1]:53 -s mh -p 30 -M 64 -o -b mh-port
-a -u [2001:db8::1]:53 -r [2001:db8::11]:53 -g -w 1
"""


@pytest.mark.parametrize(
    "thresholds, fixes",
    [
        ("-t 192.0.2.1:80 -r 192.0.2.11:80 -x 100 -y 50\n", []),
        ("-t 192.0.2.1:80 -r 192.0.2.11:80 -x 100 -y 0\n", ["-e -t 192.0.2.1:80 -r 192.0.2.11:80 -g -w 1 -x 100 -y 0"]),
        # one the file no longer names goes back to 0 0; its attributes come from the rules file
        ("", ["-e -t 192.0.2.1:80 -r 192.0.2.11:80 -g -w 1 -x 0 -y 0"]),
        (
            "-t 192.0.2.1:80 -r 192.0.2.11:80 -x 100 -y 50\n-t 192.0.2.1:80 -r 192.0.2.12:80 -x 2 -y 1\n"
            "-u [2001:db8::1]:53 -r [2001:db8::11]:53 -x 9 -y 0\n",
            ["-e -t 192.0.2.1:80 -r 192.0.2.12:80 -i -w 3 --tun-type ipip -x 2 -y 1",
             "-e -u [2001:db8::1]:53 -r [2001:db8::11]:53 -g -w 1 -x 9 -y 0"],
        ),
    ],
)
def test_thresholds_plan_names_each_real_server_to_put_right(tmp_path: Path, thresholds: str, fixes: list[str]) -> None:
    """A service the rules file does not describe (192.0.2.9:80, someone else's) is left alone."""
    (tmp_path / "rules").write_text(T_RULES)
    (tmp_path / "thresholds").write_text(thresholds)
    (tmp_path / "listing").write_text(LISTING)
    run = bash('lvs_thresholds_plan "$1" "$2" "$3"', tmp_path / "rules", tmp_path / "thresholds", tmp_path / "listing")
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == fixes


def _listed(x: str) -> str:
    """A rules-file line as 'ipvsadm -L -n --thresholds' shows its service or real server."""
    w = x.split()
    if w[1] == "-f":  # "FWM  1 IPv6 rr": the family shows only for IPv6
        six = len(w) > 3 and w[3] == "-6"
        return f"FWM  {w[2]}{' IPv6' if six else ''} rr\n" if w[0] == "-A" else f"  -> {w[w.index('-r') + 1]} 0 0 0 0\n"
    return f"{'TCP' if w[1] == '-t' else 'UDP' if w[1] == '-u' else 'SCTP'}  {w[2]} rr\n" if w[0] == "-A" else f"  -> {w[4]} 0 0 0 0\n"


def test_thresholds_golden_files_match_their_rules(tmp_path: Path) -> None:
    """Every real server a golden thresholds file names is in its rules file (else setup.sh
    would never apply it)."""
    found = 0
    for thresholds in CASES.glob("*/expected/*/etc/lvsgen/ipvs.thresholds"):
        rules = thresholds.parent / "ipvsadm.rules"
        listing = "".join(_listed(x) for x in rules.read_text().splitlines())
        (tmp_path / "listing").write_text(listing)
        run = bash('lvs_thresholds_plan "$1" "$2" "$3"', rules, thresholds, tmp_path / "listing")
        assert run.returncode == 0, run.stderr
        assert len(lines(run.stdout)) == len(lines(thresholds.read_text())), (thresholds, run.stdout)
        found += 1
    assert found, "no golden case has thresholds"


# --- options /proc cannot show, on the live side ------------------------------------------------------------


@pytest.mark.parametrize("marker", [True, False])
def test_options_proc_cannot_show_are_read_with_ipvsadm_while_the_table_had_them(tmp_path: Path, marker: bool) -> None:
    """The file took -b sh-port off, so it is all /proc can show; the live table still has it,
    and /proc shows the service as if it had not. With the marker (the table lvsgen put right
    last had such options) the engine reads 'ipvsadm -S -n' and plans the -E; without it,
    /proc is believed, which is why lvs_ipvs keeps the marker."""
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER + "TCP  C0000264:0050 sh \n  -> C000020B:0050      Route   1      0          0         \n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ipvsadm").write_text(
        "#!/bin/bash\n"
        'if [[ $* == "-S -n" ]]; then printf "%s\\n" "-A -t 192.0.2.100:80 -s sh -b sh-port" "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1"; exit 0; fi\n'
        "exit 2\n"
    )
    (bin_dir / "ipvsadm").chmod(0o755)
    desired = tmp_path / "desired"
    desired.write_text("-A -t 192.0.2.100:80 -s sh\n-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1\n")
    state = tmp_path / "state"
    state.mkdir()
    if marker:
        (state / "ipvs-hidden").write_text("")
    run = bash(
        'PATH=$BIN:$PATH LVS_HOST=lb LVS_DRY_RUN=0 LVS_TABLE_OWNED=1; lvs_ipvs_diff "$1" 0 "$2"; echo "$LVS_COUNTS $LVS_IPVS_HIDDEN"; cat "$2/plan"',
        desired, tmp_path / "plan", BIN=bin_dir, LVSGEN_PROC_IPVS=proc, LVSGEN_STATE=state, LVSGEN_RUN=tmp_path / "run",
    )
    assert run.returncode == 0, run.stderr
    if marker:
        assert lines(run.stdout) == ["1 0 0 0 0 0", "A -E -t 192.0.2.100:80 -s sh"]
    else:
        assert lines(run.stdout) == ["0 0 0 0 0 0"]


@pytest.mark.parametrize(("hidden", "before", "after"), [(1, False, True), (1, True, True), (0, True, False), (0, False, False)])
def test_the_marker_follows_the_file_the_table_was_put_right_with(tmp_path: Path, hidden: int, before: bool, after: bool) -> None:
    state = tmp_path / "state"
    if before:
        state.mkdir()
        (state / "ipvs-hidden").write_text("")
    run = bash("LVS_DRY_RUN=0 LVS_IPVS_HIDDEN=$1; lvs_ipvs_hidden_mark", str(hidden), LVSGEN_STATE=state)
    assert run.returncode == 0, run.stderr
    assert (state / "ipvs-hidden").exists() == after
    dry = bash("LVS_DRY_RUN=1 LVS_IPVS_HIDDEN=$1; lvs_ipvs_hidden_mark", str(1 - hidden), LVSGEN_STATE=state)
    assert dry.returncode == 0 and (state / "ipvs-hidden").exists() == after  # a dry run changes nothing


# Issue 19: on a director whose HZ is not known yet (no /boot/config, as in the VM guest), the
# first run's verify met a persistent service in /proc, fell back to 'ipvsadm -S -n' with status
# 3 before anything looked at the file's options, and never wrote the marker; a rebuild without
# sh-fallback then looked like no change, and --dry-run said all was well.
HIDDEN_WITH = (
    "-A -t 192.0.2.120:80 -s sh -b sh-fallback\n-a -t 192.0.2.120:80 -r 192.0.2.11:80 -g -w 1\n"
    "-A -u 192.0.2.120:5060 -s rr -p 60\n-a -u 192.0.2.120:5060 -r 192.0.2.11:5060 -g -w 1\n"
)
HIDDEN_WITHOUT = HIDDEN_WITH.replace(" -b sh-fallback", "")


def _hidden_director(tmp_path: Path) -> dict[str, Path]:
    """A director whose kernel has HIDDEN_WITH loaded, /proc as that kernel prints it (HZ 250)."""
    proc = tmp_path / "ip_vs"
    proc.write_text(PROC_HEADER + proc_service("TCP", "192.0.2.120", 80, "sh") + proc_dest("192.0.2.11", 80)
                    + proc_service("UDP", "192.0.2.120", 5060, "rr", persistent=(60 * 250, v4mask("255.255.255.255")))
                    + proc_dest("192.0.2.11", 5060))
    saved = tmp_path / "saved"
    saved.write_text(HIDDEN_WITH)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ipvsadm").write_text('#!/bin/bash\nif [[ $* == "-S -n" ]]; then cat "$SAVED"; exit 0; fi\nexit 2\n')
    (bin_dir / "ipvsadm").chmod(0o755)
    host = tmp_path / "host dir"
    (host / "etc").mkdir(parents=True)
    return {"BIN": bin_dir, "SAVED": saved, "LVSGEN_PROC_IPVS": proc, "LVSGEN_STATE": tmp_path / "state",
            "LVSGEN_RUN": tmp_path / "run", "LVS_HERE": host}


# A kernel whose HZ no file tells: only what lvs_learn_hz learns in $LVSGEN_RUN/hz.
NO_BOOT_CONFIG = 'lvs_kernel_hz() { [[ -n $LVS_HZ || ! -r $LVSGEN_RUN/hz ]] || read -r LVS_HZ <"$LVSGEN_RUN/hz"; }\n'
RUN_STEP = (NO_BOOT_CONFIG + 'PATH=$BIN:$PATH LVS_HOST=lb LVS_DRY_RUN=$1 LVS_TABLE_OWNED=1 LVS_RULES=etc/ipvsadm.rules\n'
            'lvs_ipvs_diff "$LVS_HERE/$LVS_RULES" 0 "$LVSGEN_RUN/plan"; lvs_ipvs_hidden_mark\n'
            'echo "$LVS_COUNTS"; cat "$LVSGEN_RUN/plan/plan"')


def test_a_hidden_option_loaded_without_hz_is_taken_out_when_the_file_drops_it(tmp_path: Path) -> None:
    """The sequence of the bug: the verify after a first load (HZ unknown, a persistent service),
    then a run of a file without the flag, dry and for real."""
    env = _hidden_director(tmp_path)
    rules = env["LVS_HERE"] / "etc" / "ipvsadm.rules"
    rules.write_text(HIDDEN_WITH)
    first = bash(RUN_STEP, "0", **env)
    assert first.returncode == 0, first.stderr
    assert lines(first.stdout) == ["0 0 0 0 0"]  # the table is the file
    assert (env["LVSGEN_STATE"] / "ipvs-hidden").exists(), "the first run left no marker: a later run reads /proc"
    rules.write_text(HIDDEN_WITHOUT)
    for dry in ("1", "0"):
        run = bash(RUN_STEP, dry, **env)
        assert run.returncode == 0, run.stderr
        assert lines(run.stdout) == ["1 0 0 0 0", "A -E -t 192.0.2.120:80 -s sh"], (dry, run.stdout)
    # once the kernel has the file without the flag (the -E above), the marker goes
    env["SAVED"].write_text(HIDDEN_WITHOUT)
    run = bash(RUN_STEP, "0", **env)
    assert lines(run.stdout) == ["0 0 0 0 0"] and not (env["LVSGEN_STATE"] / "ipvs-hidden").exists()


@pytest.mark.parametrize("path", ["plan", "scoped-verify", "background", "load"])
def test_every_read_of_the_table_decides_the_marker_from_the_whole_file(tmp_path: Path, path: str) -> None:
    """Whichever path read the table last in a run (a plan, the verify of a change scoped to a
    service without the flag, the plan made in the background, a first run's load), the marker
    follows the whole file."""
    env = _hidden_director(tmp_path)
    rules = env["LVS_HERE"] / "etc" / "ipvsadm.rules"
    rules.write_text(HIDDEN_WITH)
    (tmp_path / "only").write_text("-u 192.0.2.120:5060\n")
    step = {
        "plan": 'lvs_ipvs_diff "$LVS_HERE/$LVS_RULES" 0 "$LVSGEN_RUN/plan"',
        "scoped-verify": 'lvs_ipvs_diff "$LVS_HERE/$LVS_RULES" 0 "$LVSGEN_RUN/verify" "$ONLY"',
        "background": 'mkdir -p "$LVSGEN_RUN/plan"; lvs_ipvs_plan_early; lvs_ipvs_planned',
        "load": 'mkdir -p "$LVSGEN_RUN/plan"; lvs_ipvs_load "$LVS_HERE/$LVS_RULES" "$LVSGEN_RUN/plan"',
    }[path]
    run = bash(NO_BOOT_CONFIG + 'PATH=$BIN:$PATH LVS_HOST=lb LVS_DRY_RUN=0 LVS_TABLE_OWNED=1 LVS_DRAIN=0 LVS_RULES=etc/ipvsadm.rules\n'
               f'{step}; lvs_ipvs_hidden_mark; echo "$LVS_IPVS_HIDDEN"', ONLY=tmp_path / "only", **env)
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout)[-1:] == ["1"] and (env["LVSGEN_STATE"] / "ipvs-hidden").exists(), (path, run.stdout)


@pytest.mark.parametrize("rules", GOLDEN_RULES, ids=lambda p: f"{p.relative_to(CASES).parts[0]}/{p.relative_to(CASES).parts[2]}")
def test_an_image_is_made_only_for_a_file_the_engine_finds_showable(rules: Path) -> None:
    """lvs_ipvs_hidden_of takes a matching image as proof that the file has nothing /proc cannot
    show: the build's image and the engine's own check must agree on every golden table."""
    image = procimage.text(rules.read_text())
    if image is not None:
        assert bash('lvs_ipvs_proc_can_show "$1"', rules).returncode == 0, rules


def test_hidden_of_takes_the_image_only_when_it_was_made_from_the_file(tmp_path: Path) -> None:
    """A stale image (of another file) is no proof: the file's own options decide."""
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "ipvsadm.rules").write_text(HIDDEN_WITHOUT)
    (host / "ipvsadm.proc").write_text(procimage.text(HIDDEN_WITHOUT.replace("-p 60", "-p 61")) or "")
    script = 'LVS_RULES=etc/ipvsadm.rules LVS_IMAGE=ipvsadm.proc; lvs_ipvs_hidden_of "$LVS_HERE/$LVS_RULES"; echo "$LVS_IPVS_HIDDEN"'
    assert bash(script, LVS_HERE=host, LVSGEN_RUN=tmp_path / "run").stdout == "0\n"
    (host / "etc" / "ipvsadm.rules").write_text(HIDDEN_WITH)  # the image still says "showable", of another file
    assert bash(script, LVS_HERE=host, LVSGEN_RUN=tmp_path / "run").stdout == "1\n"


# --- table inet lvsgen: a change in two steps (the union first, then the file) ----------------------------
NFT_GOLDEN = CASES / "mixed" / "expected" / "edge" / "etc" / "lvsgen" / "lvsgen.nft"


def _nft_check(path: Path) -> None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if Path(nft).exists():
        run = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{path}: {run.stderr}"


def _table_lines(text: str) -> set[str]:
    return {line.strip().rstrip(",") for line in text.split("table inet lvsgen {", 1)[1].splitlines() if line.strip()}


@pytest.mark.parametrize(
    "change",
    [
        "drop a NAT reply",  # a NAT real server leaves: its replies keep their way out until it is drained
        "drop a mark rule",  # a port leaves a firewall-mark service
        "drop every NAT service",  # the forward chain and its set go, only the marks stay
        "add and drop",
    ],
)
def test_the_union_keeps_what_the_loaded_table_has_and_adds_what_the_file_says(tmp_path: Path, change: str) -> None:
    loaded = NFT_GOLDEN.read_text()
    new = loaded
    if change in ("drop a NAT reply", "add and drop"):
        new = new.replace("\t\t\ttcp . 198.51.100.12 . 8080,\n", "")
    if change == "drop a mark rule":
        new = new.replace("\t\tip daddr 203.0.113.20 tcp dport { 25, 465, 587 } meta mark set 2\n", "")
    if change == "drop every NAT service":
        head, rest = new.split("table inet lvsgen {\n", 1)
        new = head + "table inet lvsgen {\n" + rest[rest.index("\tchain marks {"):]
    if change == "add and drop":
        new = new.replace("\t\t\tudp . 198.51.100.12 . 5060,\n", "\t\t\tudp . 198.51.100.12 . 5060,\n\t\t\ttcp . 198.51.100.13 . 80,\n")
        new = new.replace("meta mark set 2\n", "meta mark set 2\n\t\tip daddr 203.0.113.20 udp dport { 4500 } meta mark set 9\n")
    assert new != loaded
    (tmp_path / "loaded.nft").write_text(loaded)
    (tmp_path / "new.nft").write_text(new)
    run = bash('lvs_nft_union "$1" "$2"', tmp_path / "loaded.nft", tmp_path / "new.nft")
    assert run.returncode == (0 if change == "add and drop" else 3), run.stderr  # 3: it only takes away
    union = run.stdout
    (tmp_path / "union.nft").write_text(union)
    assert _table_lines(union) == _table_lines(loaded) | _table_lines(new)
    assert union.startswith(new.split("table inet lvsgen {")[0])  # the new file's header
    # sets before the chains that use them, and nft's own checker takes it
    assert union.index("set nat_replies_v4 {") < union.index("chain forward {")
    _nft_check(tmp_path / "union.nft")
    # the union of the new file with the union is the union: a second run changes nothing more
    again = bash('lvs_nft_union "$1" "$2"', tmp_path / "union.nft", tmp_path / "new.nft")
    assert again.returncode == 3 and _table_lines(again.stdout) == _table_lines(union)
    if change == "add and drop":  # the loaded table's rules first: a port keeps its old mark longest
        assert union.index("meta mark set 2") < union.index("meta mark set 9")
        back = bash('lvs_nft_union "$1" "$2"', tmp_path / "new.nft", tmp_path / "loaded.nft")
        assert back.returncode == 0


def test_the_union_of_a_file_with_itself_is_the_file(tmp_path: Path) -> None:
    run = bash('lvs_nft_union "$1" "$1"', NFT_GOLDEN)
    assert run.returncode == 4, run.stderr  # nothing taken away
    assert run.stdout == NFT_GOLDEN.read_text()


def _fake_nft(tmp_path: Path) -> Path:
    """An nft whose table is a file: -f copies its argument there (/etc/... from the host folder
    $HERE, where setup.sh would have installed it), list prints it; every call is logged."""
    bin_dir = tmp_path / "fake nft"
    bin_dir.mkdir()
    (bin_dir / "nft").write_text(
        "#!/bin/bash\n"
        'd="$(dirname "$0")"; echo "nft $*" >>"$d/log"\n'
        'if [[ $1 == -f ]]; then f=$2; [[ $f == /etc/* ]] && f=$HERE$f; cp -- "$f" "$d/table" || exit 1; exit 0; fi\n'
        'if [[ $1 == -s && $2 == list ]]; then [[ -f $d/table ]] && exec cat "$d/table"; exit 1; fi\n'
        "exit 2\n"
    )
    (bin_dir / "nft").chmod(0o755)
    return bin_dir


def test_a_change_that_takes_away_loads_the_union_before_the_table_and_the_file_after(tmp_path: Path) -> None:
    here = tmp_path / "host"
    (here / "etc/lvsgen").mkdir(parents=True)
    bin_dir = _fake_nft(tmp_path)
    env = {"BIN": bin_dir, "LVSGEN_RUN": tmp_path / "run", "LVSGEN_STATE": tmp_path / "state", "HERE": here}
    script = ('PATH=$BIN:$PATH LVS_HOST=lb LVS_DRY_RUN=0 LVS_HERE=$HERE LVS_NFT=etc/lvsgen/lvsgen.nft; lvs_record_load; '
              'lvs_nftables; echo "pending=$LVS_NFT_PENDING"; lvs_nftables_finish; echo "pending=$LVS_NFT_PENDING"')
    first = NFT_GOLDEN.read_text()
    (here / "etc/lvsgen/lvsgen.nft").write_text(first)
    run = bash(script, **env)
    assert run.returncode == 0 and "pending=0\npending=0" in run.stdout, run.stdout + run.stderr
    assert run.stdout.count("+ nft -f") == 1
    assert (bin_dir / "table").read_text() == first
    # the same file again: one listing, nothing loaded
    (bin_dir / "log").unlink()
    run = bash(script, **env)
    assert run.returncode == 0 and "+ nft" not in run.stdout, run.stdout
    assert (bin_dir / "log").read_text().splitlines() == ["nft -s list table inet lvsgen"]
    # a NAT real server leaves: the union (still with its replies) before the table, the file after
    second = first.replace("\t\t\ttcp . 198.51.100.12 . 8080,\n", "")
    (here / "etc/lvsgen/lvsgen.nft").write_text(second)
    run = bash(script + '; cat "$BIN/table"', **env)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.count("+ nft -f") == 1 and "pending=1" in out, out  # only takes away: nothing before the table
    assert out.endswith(second), out
    # takes away and adds: the union first
    third = second.replace("\t\t\ttcp . 198.51.100.11 . 8080,\n", "\t\t\ttcp . 198.51.100.13 . 80,\n")
    (here / "etc/lvsgen/lvsgen.nft").write_text(third)
    (bin_dir / "log").unlink()
    run = bash(script, **env)
    assert run.returncode == 0, run.stderr
    loads = [line for line in (bin_dir / "log").read_text().splitlines() if line.startswith("nft -f")]
    assert loads == [f"nft -f {tmp_path / 'run' / 'table.union.nft'}", f"nft -f {here / 'etc/lvsgen/lvsgen.nft'}"], loads
    union = (tmp_path / "run" / "table.union.nft").read_text()
    assert "tcp . 198.51.100.11 . 8080," in union and "tcp . 198.51.100.13 . 80," in union


# --- each awk program on its own (templates/host/*.awk, run with awk -f) equals the engine's wrapper ---------
HOST_PARTS = ROOT / "templates" / "host"


def awk_f(programs: list[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """awk -f each of PROGRAMS (files of templates/host/), then ARGS (-v ..., file=N FILE ...),
    as a reader runs them: no engine, no bash."""
    command = ["awk"]
    for name in programs:
        command += ["-f", str(HOST_PARTS / name)]
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run([*command, *map(str, args)], env=env, capture_output=True, text=True, timeout=60)


def test_awk_f_proc_of_the_recorded_table_is_what_ipvsadm_saved() -> None:
    run = awk_f(["ipvs-proc.awk", "ipvs-proc-print.awk"], "-v", "hz=250", "-v", "counts=0", PROC_MIXED)
    assert run.returncode == 4, run.stderr  # the firewall-mark service (see above)
    assert sorted(lines(run.stdout)) == sorted(lines(SAVED_MIXED.read_text()))
    wrapped = bash("lvs_ipvs_proc 250 0", LVSGEN_PROC_IPVS=PROC_MIXED)
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (run.returncode, run.stdout, run.stderr)


def _plan_both(tmp_path: Path, desired: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    (tmp_path / "desired").write_text(desired)
    run = awk_f(["ipvs-proc.awk", "ipvs-plan.awk"], "-v", "owned=1", "-v", "drain=0",
                "file=2", SAVED_MIXED, "file=1", tmp_path / "desired", "file=3", "/dev/null")
    wrapped = bash('lvs_ipvs_plan "$1" "$2" /dev/null 1 0', tmp_path / "desired", SAVED_MIXED)
    return run, wrapped


def test_awk_f_plan_of_the_recorded_table_against_itself_has_nothing_to_do(tmp_path: Path) -> None:
    run, wrapped = _plan_both(tmp_path, SAVED_MIXED.read_text())
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (0, "", "")


def test_awk_f_plan_of_a_changed_weight_is_one_edit(tmp_path: Path) -> None:
    saved = SAVED_MIXED.read_text()
    line = next(x for x in lines(saved) if x.startswith("-a ") and " -w 5" in x)
    run, wrapped = _plan_both(tmp_path, saved.replace(line, line.replace(" -w 5", " -w 7")))
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == ["A -e" + line[2:].replace(" -w 5", " -w 7")]
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (run.returncode, run.stdout, run.stderr)


def test_awk_f_thresholds_plan_is_the_wrappers(tmp_path: Path) -> None:
    (tmp_path / "rules").write_text(T_RULES)
    (tmp_path / "thresholds").write_text("-t 192.0.2.1:80 -r 192.0.2.11:80 -x 100 -y 0\n")
    (tmp_path / "listing").write_text(LISTING)
    files = ("file=1", tmp_path / "rules", "file=2", tmp_path / "thresholds", "file=3", tmp_path / "listing")
    run = awk_f(["thresholds.awk"], *files)
    assert (run.returncode, run.stderr) == (0, "")
    assert lines(run.stdout) == ["-e -t 192.0.2.1:80 -r 192.0.2.11:80 -g -w 1 -x 100 -y 0"]
    wrapped = bash('lvs_thresholds_plan "$1" "$2" "$3"', *files[1::2])
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (run.returncode, run.stdout, run.stderr)


def test_awk_f_nft_union_is_the_wrappers(tmp_path: Path) -> None:
    loaded = NFT_GOLDEN.read_text()
    new = loaded.replace("\t\t\ttcp . 198.51.100.12 . 8080,\n", "")
    assert new != loaded
    (tmp_path / "loaded.nft").write_text(loaded)
    (tmp_path / "new.nft").write_text(new)
    run = awk_f(["nft-union.awk"], "file=1", tmp_path / "loaded.nft", "file=2", tmp_path / "new.nft")
    assert (run.returncode, run.stderr) == (3, "")  # the new file only takes away
    assert run.stdout == loaded  # so the union is the loaded table
    wrapped = bash('lvs_nft_union "$1" "$2"', tmp_path / "loaded.nft", tmp_path / "new.nft")
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (run.returncode, run.stdout, run.stderr)
