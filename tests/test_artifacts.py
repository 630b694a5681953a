"""Lint every generated artifact of every golden case with the real tools."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import re
import shutil
import subprocess
from typing import Any
from pathlib import Path

import pytest
import yaml

from cases import ROOT, USER_DATA, case_input, golden_cases, lvsgen, user_data
from lint import networkd_available, networkd_warnings

SCRIPTS = sorted(p for case in golden_cases() for p in (case / "expected").glob("*/setup.sh"))
HOSTS = sorted(p for case in golden_cases() for p in (case / "expected").iterdir() if p.is_dir())


def _id(path: Path) -> str:
    return f"{path.parts[-4]}/{path.parts[-2]}" if path.name == "setup.sh" else f"{path.parts[-3]}/{path.name}"


@pytest.mark.parametrize("script", SCRIPTS, ids=_id)
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not found: apt-get install shellcheck")
    run = subprocess.run(["shellcheck", "--severity=style", "--shell=bash", "--external-sources", str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=_id)
def test_bash_syntax_and_header(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


@pytest.mark.parametrize("host", HOSTS, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_cloud_init_installs_exactly_the_host_folder(host: Path) -> None:
    text = user_data(host)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert len(doc["runcmd"]) == 1 and doc["runcmd"][0][:2] == ["bash", "-c"]
    assert doc["runcmd"][0][2].startswith("bash /var/lib/lvsgen/host/setup.sh || ")
    hostname = re.search(r"^LVS_HOSTNAME=(\S+)$", (host / "setup.sh").read_text(), re.M)[1].strip("'")
    assert doc["hostname"] == hostname.split(".")[0], "cloud-init sets the hostname setup.sh checks"
    assert doc.get("fqdn", hostname) == hostname
    written = {f["path"]: f for f in doc["write_files"]}
    expected = {
        "/var/lib/lvsgen/host/" + p.relative_to(host).as_posix(): p
        for p in host.rglob("*")
        if p.is_file() and p.name not in (USER_DATA, ".lvsgen-manifest")
    }
    assert sorted(written) == sorted(expected)
    for path, src in expected.items():
        assert written[path]["content"] == src.read_text(), path
        assert written[path]["permissions"] == f"{src.stat().st_mode & 0o777:04o}", path


@pytest.mark.parametrize("host", HOSTS, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_sysctl_files_parse(host: Path) -> None:
    for conf in host.glob("etc/sysctl.d/*.conf"):
        for number, line in enumerate(conf.read_text().splitlines(), 1):
            if line and not line.startswith("#"):
                assert re.fullmatch(r"[a-z0-9_./-]+ = -?[0-9]+", line), f"{conf}:{number}: {line}"


def _units(case: Path) -> dict[str, str]:
    """Every networkd file of a case, renamed per host so that one networkd run sees all.
    A drop-in gets a stub of the .network file it extends, as on the host."""
    units: dict[str, str] = {}
    for host in sorted((case / "expected").iterdir()):
        base = host / "etc/systemd/network"
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            units[f"{host.name}-{rel}"] = path.read_text()
            if path.parent != base:
                # The host's own file, which the drop-in extends, carries its address.
                match = re.search(r"^  '([^' ]+) ([^' ]+)'$", (host / "setup.sh").read_text().split("LVS_HOST_ADDRESSES=(", 1)[1], re.M)
                assert match, f"{host}: setup.sh names no host address"
                stub = f"{host.name}-{path.parent.name.removesuffix('.d')}"
                units[stub] = f"[Match]\nName={match[2]}\n\n[Network]\nAddress={match[1]}\n"
    return units


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_networkd_parses_every_unit(case: Path) -> None:
    why = networkd_available()
    if why:
        pytest.skip(why)
    units = _units(case)
    assert units
    assert networkd_warnings(units) == []


def test_networkd_lint_catches_a_bad_unit() -> None:
    """Positive control: the lint above can fail."""
    why = networkd_available()
    if why:
        pytest.skip(why)
    bad = {"10-x.network": "[Match]\nName=eth9\n\n[Address]\nAdress=192.0.2.1/24\n\n[Network]\nGateway=not-an-ip\n"}
    warnings = networkd_warnings(bad)
    assert any("Adress" in w for w in warnings), warnings
    assert any("Gateway" in w or "not-an-ip" in w for w in warnings), warnings


def test_networkd_lint_without_a_sign_of_reading_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A networkd that says nothing (here: /bin/true in its place) must not pass as 'no warnings'."""
    why = networkd_available()
    if why:
        pytest.skip(why)
    import lint

    monkeypatch.setattr(lint, "NETWORKD", Path("/bin/true"))
    with pytest.raises(AssertionError, match="no sign that it read the units"):
        lint.networkd_warnings({"10-x.network": "[Match]\nName=eth0\n"}, wait=1.0)


@pytest.mark.parametrize("host", HOSTS, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_yaml_emitters_write_the_same_bytes(host: Path) -> None:
    """lvsgen uses libyaml's emitter when PyYAML has it, PyYAML's own otherwise: both must
    give the committed bytes, or the output would depend on the machine."""
    from lvsgen.artifacts.cloud_init import literal_dumper

    text = user_data(host)
    body = text.split("\n", 2)[2]  # after "#cloud-config" and the header comment
    doc = yaml.safe_load(text)
    dumpers = [yaml.SafeDumper] + ([yaml.CSafeDumper] if getattr(yaml, "__with_libyaml__", False) else [])
    if len(dumpers) < 2:
        pytest.skip("PyYAML was built without libyaml: only one emitter to compare")
    for base in dumpers:
        out = yaml.dump(doc, Dumper=literal_dumper(base), sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)
        assert out == body, f"{base.__name__} writes other bytes than the golden"


def test_ipv6_nat_director_keeps_accepting_router_advertisements(tmp_path: Path) -> None:
    """Global IPv6 forwarding makes the kernel ignore RAs; accept_ra=2 on the client-side
    interface keeps an RA-learned default route. Only there: not 'all', not the NAT side."""
    from cases import lvsgen

    doc = {
        "cluster": "nat6",
        "hosts": {"lb": {"role": "director", "interface": "eth0", "address": "2001:db8:1::1/64",
                         "nat_interface": "eth1", "nat_address": "2001:db8:2::1/64"}},
        "vips": {"web": {"address": "2001:db8:1::100", "director": "lb", "services": [
            {"port": 80, "scheduler": "rr", "forwarding": "nat", "real_servers": [{"address": "2001:db8:2::11"}]}]}},
    }
    (tmp_path / "nat6.json").write_text(json.dumps(doc))
    build = lvsgen("build", str(tmp_path / "nat6.json"), "-o", str(tmp_path / "out"))
    assert build.returncode == 0, build.stderr
    conf = (tmp_path / "out/lb/etc/sysctl.d/99-zz-lvsgen.conf").read_text()
    settings = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert "net.ipv6.conf.all.forwarding = 1" in settings
    assert "net.ipv6.conf.eth0.accept_ra = 2" in settings
    assert [s for s in settings if "accept_ra" in s] == ["net.ipv6.conf.eth0.accept_ra = 2"]
    assert "'net.ipv6.conf.eth0.accept_ra 2'" in (tmp_path / "out/lb/setup.sh").read_text()


def test_tun_real_server_loosens_rp_filter_on_tunl0_only() -> None:
    for conf in Path(__file__).resolve().parent.glob("cases/*/expected/*/etc/sysctl.d/*.conf"):
        settings = [line for line in conf.read_text().splitlines() if line and not line.startswith("#")]
        assert not any(s.startswith("net.ipv4.conf.all.rp_filter") for s in settings), conf
    far1 = Path(__file__).resolve().parent / "cases/mixed/expected/far1/etc/sysctl.d/99-zz-lvsgen.conf"
    assert "net.ipv4.conf.tunl0.rp_filter = 2" in far1.read_text()


@pytest.mark.parametrize("status", [0, 1, 3])
def test_cloud_init_runcmd_fails_loudly_with_setup_sh(tmp_path: Path, status: int) -> None:
    """The runcmd line, run as cloud-init runs it, with a stand-in setup.sh: its exit status
    passes through, and a failure is said on stderr (and the console, where there is one)."""
    host = next(h for h in HOSTS if (h / USER_DATA).exists())
    command = yaml.safe_load(user_data(host))["runcmd"][0]
    fake = tmp_path / "host dir" / "setup.sh"
    fake.parent.mkdir()
    fake.write_text(f"echo running; exit {status}\n")
    script = command[2].replace("/var/lib/lvsgen/host/setup.sh", f"'{fake}'")
    run = subprocess.run([*command[:2], script], capture_output=True, text=True, timeout=30)
    assert run.returncode == status
    assert run.stdout == "running\n"
    if status:
        assert f"failed with exit status {status} and stopped at the step it names" in run.stderr
    else:
        assert run.stderr == ""


NFT_FILES = sorted((ROOT / "tests" / "cases").glob("*/expected/*/etc/lvsgen/lvsgen.nft"))


def test_some_case_has_a_forwarding_policy() -> None:
    assert NFT_FILES, "no golden case has a NAT director with a forwarding policy"


@pytest.mark.parametrize("path", NFT_FILES, ids=lambda p: p.parts[-5])
def test_forwarding_policy_parses_with_nft(path: Path) -> None:
    """nft's own parser and checker (-c: nothing is loaded) accept the file as it is."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(nft).exists():
        pytest.skip("nft is not installed (apt-get install nftables)")
    run = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_forwarding_policy_only_without_opt_out(tmp_path: Path) -> None:
    """nat_forwarding "host" leaves forwarding to the host: no table, no nftables package."""
    doc = json.loads((ROOT / "tests/cases/mixed/cluster.json").read_text())
    doc["hosts"]["edge"]["nat_forwarding"] = "host"
    # and no firewall-mark service, whose marks would need the table
    for vip in doc["vips"].values():
        vip["services"] = [s for s in vip["services"] if "fwmark" not in s]
    src = tmp_path / "cluster.json"
    src.write_text(json.dumps(doc))
    run = lvsgen("build", str(src), "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    edge = tmp_path / "out/edge"
    assert not (edge / "etc/lvsgen/lvsgen.nft").exists()
    assert "LVS_NFT=''" in (edge / "setup.sh").read_text()
    assert "nftables" not in user_data(edge).split("write_files:")[0]
    assert "the host's own firewall decides" in (edge / "etc/sysctl.d/99-zz-lvsgen.conf").read_text()


def test_marks_without_forwarding_policy(tmp_path: Path) -> None:
    """A director with firewall-mark services and nat_forwarding "host": the table holds the
    marks and no forward chain, and the host still installs nftables."""
    doc = json.loads((ROOT / "tests/cases/mixed/cluster.json").read_text())
    doc["hosts"]["edge"]["nat_forwarding"] = "host"
    src = tmp_path / "cluster.json"
    src.write_text(json.dumps(doc))
    run = lvsgen("build", str(src), "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    edge = tmp_path / "out/edge"
    table = (edge / "etc/lvsgen/lvsgen.nft").read_text()
    assert "hook forward" not in table and "nat_replies" not in table
    assert "ip daddr 203.0.113.10 tcp dport { 8000-8009, 8080 } meta mark set 1" in table
    assert "LVS_NFT='etc/lvsgen/lvsgen.nft'" in (edge / "setup.sh").read_text()
    assert "- nftables" in user_data(edge).split("write_files:")[0]
    assert "nf_tables" in (edge / "etc/modules-load.d/lvsgen.conf").read_text()


# OpenStack nova refuses user-data over 65,535 bytes once base64-encoded; vSphere's guestinfo
# holds 64 KiB. The user-data is gzip-compressed so that a director's fits (README).
USER_DATA_LIMIT = 65_535


def test_every_golden_user_data_fits_64_kb_after_base64() -> None:
    sizes = {p: len(base64.b64encode(p.read_bytes())) for case in golden_cases() for p in (case / "expected").glob(f"*/{USER_DATA}")}
    largest = max(sizes, key=sizes.__getitem__)
    # the largest is a director's (the engine, the table and its image): the one that matters
    assert (largest.parent / "etc/lvsgen/ipvsadm.rules").exists(), largest
    assert sizes[largest] <= USER_DATA_LIMIT, f"{largest}: {sizes[largest]} bytes after base64, over {USER_DATA_LIMIT}"


def test_user_data_is_the_gzip_of_its_yaml_and_the_same_bytes_every_time(tmp_path: Path) -> None:
    """Deterministic gzip: no file name, time 0, so a rebuild writes the same bytes."""
    host = next(iter(HOSTS))
    data = (host / USER_DATA).read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0" and not data[3] & 0x08, "gzip with an mtime or a name"
    assert user_data(host).startswith("#cloud-config\n")


def _planned_user_data() -> list[tuple[Path, Any]]:
    """(golden host folder, its planned user-data File) for every host of every golden case."""
    from lvsgen import pipeline

    out = []
    for case in golden_cases():
        for host, files in pipeline.compile_file(case_input(case)).items():
            out.append((case / "expected" / host, next(f for f in files if f.path == USER_DATA)))
    return out


def test_user_data_compresses_the_engine_once_as_its_own_gzip_member() -> None:
    """The engine's block, the same bytes in every user-data, is one gzip member made once per
    build, between the members of the YAML before and after it. gzip.decompress (what
    cloud-init uses) and gzip -dc read the series as one file: exactly the YAML that a single
    member gives, and the bytes in the golden trees."""
    from lvsgen.artifacts.cloud_init import entry_yaml
    from lvsgen.files import LIBRARY, File
    from lvsgen import engine as host_engine

    engine = gzip.compress(entry_yaml(File(LIBRARY, host_engine.text())).encode(), compresslevel=9, mtime=0)
    planned = _planned_user_data()
    assert len(planned) == len(HOSTS)
    for folder, f in planned:
        data = f.data()
        assert data == (folder / USER_DATA).read_bytes(), folder
        single = dataclasses.replace(f, shared="").data()
        assert single != data and gzip.decompress(single) == f.text.encode()
        assert data.count(engine) == 1 and not data.startswith(engine), f"{folder}: the engine is not a member of its own"
        assert gzip.decompress(data) == f.text.encode(), folder
        zcat = subprocess.run(["gzip", "-dc"], input=data, capture_output=True, check=True)
        assert zcat.stdout == f.text.encode() and zcat.stderr == b"", folder
        assert len(base64.b64encode(data)) <= USER_DATA_LIMIT, folder
        assert f.data() == data, "the same bytes every time"
