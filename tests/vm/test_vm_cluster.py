"""lvsgen's own artifacts, applied in a real kernel (pytest -m vm).

For each example, one VM boot runs cluster/driver.py in three phases:
- setup:    every host's generated setup.sh, run as it is in the host's own namespace, then
            traffic, ARP, IPVS stats, the saved table, and a second run of every setup.sh;
- noarp:    the same cluster with the real servers' ARP settings cut out (negative control);
- networkd: the generated etc/ installed and brought up by systemd-sysctl and systemd-networkd
            (the boot path), the rules file restored, traffic and ARP again, then setup.sh,
            which must find nothing to change.
The driver only records facts; the expectations are computed here from lvsgen's own model.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import vm  # noqa: E402
from cases import ROOT, lvsgen  # noqa: E402

from lvsgen import pipeline  # noqa: E402
from lvsgen.model import Forwarding, Protocol  # noqa: E402
from lvsgen.plan import host_state  # noqa: E402

pytestmark = pytest.mark.vm

EXAMPLES = {"seed-dr": ROOT / "examples/seed-dr.json", "shop": ROOT / "examples/cluster.json"}


def _service_key(svc) -> str:
    return f"{svc.protocol.value} {svc.address}:{svc.port}"


def _ipvs_key(svc) -> str:
    return f"{svc.protocol.name} {svc.address}:{svc.port}"


def expected_answers(svc) -> tuple[int, dict[str, int] | None, str]:
    """(requests to send, exact split or None, rule) for one service, from the model."""
    active = [rs for rs in svc.real_servers if rs.weight > 0]
    assert all(rs.host for rs in active), "a test cluster's unmanaged real servers must have weight 0"
    if svc.persistence is not None:
        return 4, None, "persistent: one real server for every request"
    if svc.scheduler == "rr":
        return 2 * len(active), {rs.host: 2 for rs in active}, "rr: 2 each"
    if svc.scheduler == "wrr":
        return 2 * sum(rs.weight for rs in active), {rs.host: 2 * rs.weight for rs in active}, "wrr: 2 x weight each"
    return 3 * len(active), None, "every real server at least once"


def topology(cluster, out: str) -> dict:
    networks: list[str] = []
    hosts = []
    for host in cluster.hosts:
        net = str(host.address.network)
        if net not in networks:
            networks.append(net)
        state = host_state(cluster, host)
        serve = sorted({
            f"{svc.protocol.value}:{svc.address}:{svc.port}"
            for vip in cluster.vips for svc in vip.services
            if any(rs.host == host.name for rs in svc.real_servers)
        })
        own_units = {}
        if host.network_file:
            # The file the host already has (network_file): it configures the host's address.
            own_units[host.network_file] = f"[Match]\nName={host.interface}\n\n[Network]\nAddress={host.address.with_prefixlen}\n"
        hosts.append({
            "name": host.name, "hostname": host.hostname, "role": host.role.value,
            "interface": host.interface, "network": net, "serve": serve,
            "addresses": [[a.cidr, a.device] for a in state.addresses],
            "own_units": own_units,
        })
    director = next(h for h in cluster.hosts if h.is_director)
    used = {h.address.ip for h in cluster.hosts} | {v.address for v in cluster.vips}
    client_ip = next(ip for ip in reversed(list(director.address.network.hosts())) if ip not in used)
    plan, big = [], []
    for vip in cluster.vips:
        for svc in vip.services:
            n, _, _ = expected_answers(svc)
            plan.append({"key": _service_key(svc), "protocol": svc.protocol.value, "vip": str(svc.address), "port": svc.port, "n": n})
        if not any(b["director"] == vip.director for b in big):
            tcp = next((s for s in vip.services if s.protocol is Protocol.TCP and s.persistence is None), None)
            if tcp is not None:
                big.append({"director": vip.director, "vip": str(vip.address), "port": tcp.port})
    return {
        "hosts": hosts,
        "networks": networks,
        "client": {"name": "client", "interface": "eth0", "address": f"{client_ip}/{director.address.network.prefixlen}", "network": str(director.address.network)},
        "vips": [{"address": str(v.address), "director": v.director} for v in cluster.vips],
        "plan": plan,
        "big": big,
        "trees": {"main": out, "noarp": f"{out}-noarp"},
        "phases": ["setup", "noarp", "networkd"],
    }


def strip_arp(tree: Path) -> None:
    """The negative control: real servers without their ARP settings, in script and drop-in."""
    for script in tree.glob("*/setup.sh"):
        text = script.read_text()
        if "LVS_RULES=''" not in text:
            continue  # a director
        script.write_text("".join(line for line in text.splitlines(keepends=True) if "arp_" not in line))
        conf = script.parent / "etc/sysctl.d/90-lvsgen.conf"
        # setup.sh checks its files' bytes against the sysctl drop-in; both lose the ARP lines
        if conf.exists():
            conf.write_text("".join(line for line in conf.read_text().splitlines(keepends=True) if "arp_" not in line))


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def cluster_run(request, tmp_path_factory):
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    name = request.param
    work = tmp_path_factory.mktemp(f"vm-{name}")
    build = lvsgen("build", str(EXAMPLES[name]), "-o", str(work / "out"))
    assert build.returncode == 0, build.stderr
    shutil.copytree(work / "out", work / "out-noarp")
    strip_arp(work / "out-noarp")
    cluster = pipeline.load(EXAMPLES[name])
    (work / "topology.json").write_text(json.dumps(topology(cluster, "out"), indent=1))
    for f in ("run.sh", "driver.py", "peer.py"):
        shutil.copy2(HERE / "cluster" / f, work / f)
    run = vm.boot(work, timeout=1500)
    print(run.summary())
    results_file = work / "results.json"
    assert results_file.exists(), run.diagnostics()
    results = json.loads(results_file.read_text())
    (work / "console.txt").write_text(run.output)
    return {"name": name, "cluster": cluster, "results": results, "run": run, "work": work}


def phase(cluster_run, name: str) -> dict:
    r = cluster_run["results"].get(name)
    assert r is not None, f"phase {name} did not run\n" + cluster_run["run"].diagnostics()
    assert "error" not in r, r["error"] + "\n" + cluster_run["run"].diagnostics()
    return r


def services(cluster_run):
    return [svc for vip in cluster_run["cluster"].vips for svc in vip.services]


def check_answers(cluster, answers: dict) -> list[str]:
    problems = []
    for vip in cluster.vips:
        for svc in vip.services:
            got = answers.get(_service_key(svc), [])
            n, split, rule = expected_answers(svc)
            counts = {name: got.count(name) for name in set(got)}
            members = {rs.host for rs in svc.real_servers if rs.weight > 0}
            if len(got) != n or set(counts) - members:
                problems.append(f"{_service_key(svc)}: {got} (expected {n} answers from {sorted(members)})")
            elif split is not None and counts != split:
                problems.append(f"{_service_key(svc)}: {counts}, expected {split} ({rule})")
            elif svc.persistence is not None and len(counts) != 1:
                problems.append(f"{_service_key(svc)}: {counts}, expected one real server ({rule})")
            elif split is None and svc.persistence is None and set(counts) != members:
                problems.append(f"{_service_key(svc)}: {counts}, expected every one of {sorted(members)} ({rule})")
    return problems


def check_arp(arp: dict) -> list[str]:
    return [
        f"ARP for {vip}: answered by {seen['macs']}, expected only the director's {seen['director_mac']}"
        for vip, seen in sorted(arp.items())
        if seen["macs"] != [seen["director_mac"]]
    ]


# --- phase: setup.sh -----------------------------------------------------------------------------
def test_every_setup_sh_succeeds(cluster_run):
    first = phase(cluster_run, "setup")["first"]
    failed = {h: r["output"] for h, r in first.items() if r["rc"] != 0}
    assert not failed, json.dumps(failed, indent=1)
    assert set(first) == {h.name for h in cluster_run["cluster"].hosts}


def test_every_real_server_answers_in_the_scheduled_split(cluster_run):
    answers = phase(cluster_run, "setup")["answers"]
    assert answers, "no traffic was sent"
    assert check_answers(cluster_run["cluster"], answers) == []


def test_arp_for_each_vip_is_answered_by_the_director_only(cluster_run):
    arp = phase(cluster_run, "setup")["arp"]
    assert set(arp) == {str(v.address) for v in cluster_run["cluster"].vips}
    assert check_arp(arp) == []


def test_dr_replies_bypass_the_director(cluster_run):
    r = phase(cluster_run, "setup")
    for director, seen in r["bypass"].items():
        assert seen["bodies"] == [str(2 * 1024 * 1024)] * 2, seen
        # The client received 4 MiB; the director saw only the requests and ACKs.
        assert seen["client_rx"] > 4_000_000, seen
        assert seen["director_rx"] < seen["client_rx"] / 20, seen
    for svc in services(cluster_run):
        if svc.forwarding is Forwarding.DR:
            director = next(v.director for v in cluster_run["cluster"].vips if v.name == svc.vip)
            conns, inpkts, outpkts = r["stats"][director][_ipvs_key(svc)]
            assert conns > 0 and inpkts > 0, (svc, r["stats"][director])
            assert outpkts == 0, f"{_ipvs_key(svc)}: OutPkts {outpkts}: replies went through the director"


def test_saved_table_equals_the_rules_file(cluster_run):
    saved = phase(cluster_run, "setup")["saved"]
    directors = [h.name for h in cluster_run["cluster"].hosts if h.is_director]
    assert sorted(saved) == sorted(directors)
    for director in directors:
        rules = (cluster_run["work"] / "out" / director / "etc/lvsgen/ipvsadm.rules").read_text()
        # The order of ipvsadm-save depends on the kernel's hash for some address sets (see
        # lvsgen.order), and the converge adds entries in its own order: compare as lines.
        assert sorted(saved[director].splitlines()) == sorted(rules.splitlines()), f"{director}: ipvsadm-save -n differs from etc/lvsgen/ipvsadm.rules"


def test_second_run_of_every_setup_sh_changes_nothing(cluster_run):
    r = phase(cluster_run, "setup")
    for host, second in r["second"].items():
        assert second["rc"] == 0, second["output"]
        assert "no changes: already in the described state" in second["output"], second["output"]
        assert r["before"][host] == r["after"][host], f"{host}: state changed on the second run"
        assert "## ipvs" in r["before"][host] and "## sysctls" in r["before"][host]


def test_idempotence_snapshot_covers_the_state(cluster_run):
    """The snapshot compared above really holds the VIPs, sysctls and table it must compare."""
    r = phase(cluster_run, "setup")
    for host in cluster_run["cluster"].hosts:
        snap = r["before"][host.name]
        for address in host_state(cluster_run["cluster"], host).addresses:
            assert f" {address.cidr} " in snap or f" {address.cidr}\n" in snap, (host.name, address)
        if host.is_director:
            assert (cluster_run["work"] / "out" / host.name / "etc/lvsgen/ipvsadm.rules").read_text().splitlines()[0] in snap
            assert "/var/lib/lvsgen/record" in snap and "/etc/systemd/system/multi-user.target.wants/lvsgen.service" in snap
        else:
            assert re.search(r"^net\.ipv4\.conf\.all\.arp_ignore = 1$", snap, re.M), host.name


# --- phase: negative control -----------------------------------------------------------------------
def test_negative_control_without_arp_settings_is_detected(cluster_run):
    r = phase(cluster_run, "noarp")
    assert all(x["rc"] == 0 for x in r["first"].values()), r["first"]
    problems = check_arp(r["arp"])
    assert problems, "with the real servers' ARP settings cut out, the ARP check still passed: it cannot fail"
    assert any(len(seen["macs"]) > 1 for seen in r["arp"].values())


# --- phase: systemd-networkd -------------------------------------------------------------------------
def test_networkd_configures_every_address(cluster_run):
    r = phase(cluster_run, "networkd")
    assert r["missing"] == [], "\n".join(r["missing"]) + "\n" + json.dumps(r["logs"], indent=1)[-6000:]


def test_boot_unit_loads_the_table_before_the_network(cluster_run):
    """The generated unit's ExecStart, run after systemd-sysctl and before systemd-networkd
    as its ordering says, loads every director's table: no step is done by hand."""
    boot = phase(cluster_run, "networkd")["boot_unit"]
    directors = [h.name for h in cluster_run["cluster"].hosts if h.is_director]
    assert sorted(boot) == sorted(directors)
    for director, result in boot.items():
        assert result["rc"] == "0", f"{director}: {result}"
        assert "change(s) made" in result["output"], result["output"]


def test_networkd_units_parse_without_warnings(cluster_run):
    logs = phase(cluster_run, "networkd")["logs"]
    bad = [line for text in logs.values() for line in text.splitlines() if re.search(r"/etc/systemd/network/.*:\d+: ", line)]
    assert bad == []


def test_networkd_cluster_serves_and_hides_arp(cluster_run):
    r = phase(cluster_run, "networkd")
    assert check_answers(cluster_run["cluster"], r["answers"]) == []
    assert check_arp(r["arp"]) == []


def test_setup_sh_after_networkd_changes_nothing(cluster_run):
    """Both paths reach the same state: after the boot path, setup.sh finds nothing to do."""
    for host, result in phase(cluster_run, "networkd")["setup"].items():
        assert result["rc"] == 0, result["output"]
        assert "no changes: already in the described state" in result["output"], f"{host}:\n{result['output']}"
