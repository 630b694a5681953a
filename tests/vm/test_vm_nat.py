"""LVS-NAT in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot per cluster file runs cluster/driver.py: tests/vm/nat/cluster.json is IPv4, a
director with two NICs (clients on 203.0.113.0/24, real servers on 198.51.100.0/24), two real
servers that listen on remapped ports, a TCP and a UDP service, and a firewall-mark service
(mark 3: ports 8000 and 9000-9001; app1 keeps each port, app2 gets them all on 8080, and the
forwarding policy lets the replies of the range through); tests/vm/nat/cluster6.json is
the same in IPv6 (2001:db8:1::/64 and 2001:db8:2::/64). Phases:
- nat:      setup.sh on every host; traffic through the VIP (the split the schedulers give);
            replies through the director (OutPkts); each real server's default route via the
            director; the director's forwarding policy against a client that routes straight
            to the real servers, with deleting lvsgen's table as the control and setup.sh
            healing it; a real server without its route via the director (negative control);
- ifupdown: a reboot without networkd: the boot units' commands alone around the hosts' own
            network, so the real servers' route via the director comes from
            lvsgen-network.service (and, in IPv6, the director's VIP on its NIC);
- ra:       IPv6 only: the director forwards, so it takes router advertisements only with
            accept_ra 2 on its NIC, which lvsgen sets; with 1 (negative control) it ignores
            them, and setup.sh puts 2 back.
Expectations come from the raw cluster file (tests/vm/expect.py), not from lvsgen.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import vm  # noqa: E402
from cases import lvsgen  # noqa: E402

from driven import cluster_files, run_driver, second_run_problems  # noqa: E402
from expect import Cluster, check_answers, expected_answers, table_problems  # noqa: E402

pytestmark = pytest.mark.vm

def _family(path: Path) -> str:
    return "ipv6" if ":" in next(iter(json.loads(path.read_text())["vips"].values()))["address"] else "ipv4"


# {"<file stem>-<family>": path}: the shipped files, or LVSGEN_VM_CLUSTER_NAT's (tests/vm/README.md).
CLUSTERS = {f"{p.stem}-{_family(p)}": p for p in cluster_files("nat", [HERE / "nat" / "cluster.json", HERE / "nat" / "cluster6.json"])}


def gateway(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """A router address on NET that no host has: .254, or ...:fffe."""
    return str(net[-2])


def topology(cluster: Cluster) -> dict:
    hosts = []
    networks = []
    for name, host in cluster.hosts.items():
        own = ipaddress.ip_interface(host["address"])
        networks += [str(own.network)] + ([str(ipaddress.ip_interface(host["nat_address"]).network)] if "nat_address" in host else [])
        entry = {
            "name": name, "hostname": cluster.hostname(name), "role": host["role"],
            "interface": host["interface"], "network": str(own.network), "own_address": str(own),
            # Not the director: the real servers' own default route, which lvsgen replaces.
            "gateway": gateway(own.network),
            "serve": sorted({f"{svc['protocol']}:{own.ip}:{svc['ports'][name]}" for svc in cluster.services if name in svc["weights"]}),
            "addresses": [list(a) for a in cluster.addresses(name)], "own_units": {},
        }
        if "nat_address" in host:
            nat = ipaddress.ip_interface(host["nat_address"])
            entry["extra_nics"] = [{"interface": host["nat_interface"], "network": str(nat.network), "own_address": str(nat)}]
        hosts.append(entry)
    director = cluster.hosts[cluster.directors()[0]]
    front = ipaddress.ip_interface(director["address"]).network
    rs_net = ipaddress.ip_interface(director["nat_address"]).network
    plan = []
    for svc in cluster.services:
        n, _, _ = expected_answers(svc)
        plan.append({"key": svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n})
    # One probe per real server and port it listens on, keyed by all three: two services of one
    # protocol on one real server are two probes (a key without the port made them one).
    direct = sorted({
        (svc["protocol"], name, svc["ports"][name]): {
            "key": f"{svc['protocol']} {name} {svc['ports'][name]}", "protocol": svc["protocol"], "n": 1,
            "vip": str(ipaddress.ip_interface(cluster.hosts[name]["address"]).ip), "port": svc["ports"][name]}
        for svc in cluster.services for name in sorted(svc["weights"])
    }.values(), key=lambda d: d["key"])
    return {
        "hosts": hosts,
        "networks": sorted(set(networks)),
        "client": {"name": "client", "interface": "eth0", "address": f"{front[0x50]}/{front.prefixlen}", "network": str(front)},
        "vips": [{"address": v["address"], "director": v["director"]} for v in cluster.vips],
        "plan": plan, "big": [], "mutants": {},
        "trees": {"main": "out"},
        "nat": {"rs_network": str(rs_net), "director_front": str(ipaddress.ip_interface(director["address"]).ip),
                "direct": direct, "unrouted": sorted(n for n, h in cluster.hosts.items() if h["role"] != "director")[0]},
        "phases": ["nat", "ifupdown"] + (["ra"] if front.version == 6 else []),
    }


@pytest.fixture(scope="module", params=sorted(CLUSTERS))
def nat_run(request, tmp_path_factory):
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp(f"vm-nat-{request.param}")
    build = lvsgen("build", str(CLUSTERS[request.param]), "-o", str(work / "out"))
    assert build.returncode == 0, build.stderr
    cluster = Cluster(CLUSTERS[request.param])
    run, results = run_driver(work, topology(cluster), timeout=1200)
    director = cluster.directors()[0]
    return {"cluster": cluster, "results": results, "run": run, "work": work,
            "director": director, "nat_ip": str(ipaddress.ip_interface(cluster.hosts[director]["nat_address"]).ip),
            "reals": sorted(n for n, h in cluster.hosts.items() if h["role"] != "director"), "v6": ":" in cluster.vips[0]["address"],
            "probes": sorted(d["key"] for d in topology(cluster)["nat"]["direct"]), "unrouted": topology(cluster)["nat"]["unrouted"]}


def phase(nat_run, name: str) -> dict:
    r = nat_run["results"].get(name)
    assert r is not None, f"phase {name} did not run\n" + nat_run["run"].diagnostics()
    assert "error" not in r, r["error"] + "\n" + nat_run["run"].diagnostics()
    return r


def test_every_setup_sh_succeeds_on_a_bare_kernel(nat_run):
    r = phase(nat_run, "nat")
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in nat_run["cluster"].hosts}, r["first"]
    wanted = {"ip_vs", "nf_tables"} | {f"ip_vs_{svc['scheduler']}" for svc in nat_run["cluster"].services}
    assert wanted <= set(r["modules"]), r["modules"]


def test_nat_serves_through_the_vip_on_the_remapped_ports(nat_run):
    r = phase(nat_run, "nat")
    assert check_answers(nat_run["cluster"], r["answers"]) == []


def test_nat_replies_go_back_through_the_director(nat_run):
    r = phase(nat_run, "nat")
    for svc in nat_run["cluster"].services:
        conns, inpkts, outpkts = r["stats"][nat_run["director"]][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0 and outpkts > 0, (svc["ipvs_key"], r["stats"])


def test_real_servers_route_through_the_director_and_the_director_answers_arp(nat_run):
    r = phase(nat_run, "nat")
    hosts = nat_run["cluster"].hosts
    for name in nat_run["reals"]:
        assert r["routes"][name].startswith(f"default via {nat_run['nat_ip']} dev {hosts[name]['interface']}"), r["routes"]
    director = hosts[nat_run["director"]]
    front = ipaddress.ip_interface(director["address"]).network
    assert r["routes"][nat_run["director"]].startswith(f"default via {gateway(front)} dev {director['interface']}"), "the director's own route was changed"
    assert len(r["arp"]) == (0 if nat_run["v6"] else 1), r["arp"]
    for vip, seen in r["arp"].items():
        assert seen["macs"] == [seen["director_mac"]], (vip, seen)


def test_the_saved_table_thresholds_and_timeouts_are_what_the_file_says(nat_run):
    assert table_problems(nat_run["cluster"], phase(nat_run, "nat")["tables"]) == []


def _probed(nat_run, answers: dict) -> None:
    """Every probe was sent and got its one answer or error: a probe left out must fail."""
    assert sorted(answers) == nat_run["probes"], f"probes missing or extra: {sorted(answers)} != {nat_run['probes']}"
    assert all(len(got) == 1 for got in answers.values()), answers


def _all_failed(nat_run, answers: dict) -> bool:
    _probed(nat_run, answers)
    return all(a.startswith("ERR") for got in answers.values() for a in got)


def _all_answered(nat_run, answers: dict) -> bool:
    _probed(nat_run, answers)
    return all(not got[0].startswith("ERR") for got in answers.values())


def test_every_real_server_port_is_probed_directly(nat_run):
    """One probe per (protocol, real server, port): each of the file's real servers, on every
    port it listens on."""
    cluster = nat_run["cluster"]
    want = {f"{svc['protocol']} {name} {svc['ports'][name]}" for svc in cluster.services for name in svc["weights"]}
    assert set(nat_run["probes"]) == want and len(want) >= len(nat_run["reals"]), (nat_run["probes"], want)


def test_the_director_forwards_nothing_but_lvs_replies(nat_run):
    """A client that routes the real servers' network via the director cannot reach them."""
    r = phase(nat_run, "nat")
    assert "table inet lvsgen" in r["ruleset"] and "policy drop" in r["ruleset"], r["ruleset"]
    assert _all_failed(nat_run, r["direct_blocked"]), r["direct_blocked"]


def test_control_without_lvsgens_table_the_real_servers_are_reachable(nat_run):
    """The same requests with lvsgen's table deleted get answers: the table is what blocks."""
    r = phase(nat_run, "nat")
    assert _all_answered(nat_run, r["direct_open"]), r["direct_open"]


def test_setup_sh_restores_a_deleted_policy_and_then_changes_nothing(nat_run):
    r = phase(nat_run, "nat")
    heal = r["heal"][nat_run["director"]]
    assert heal["rc"] == 0, heal["output"]
    assert any("+ nft -f " in x and x.endswith("/etc/lvsgen/lvsgen.nft") for x in heal["output"].splitlines()), heal["output"]
    assert _all_failed(nat_run, r["direct_after_heal"]), r["direct_after_heal"]
    assert second_run_problems(nat_run["cluster"], r) == []


def test_negative_control_a_real_server_without_its_route_fails_the_check(nat_run):
    r = phase(nat_run, "nat")
    problems = check_answers(nat_run["cluster"], r["answers_unrouted"])
    assert problems, f"with {nat_run['unrouted']}'s route via the director gone, the answer check still passed"


def test_reboot_without_networkd_restores_the_route_via_the_late_unit(nat_run):
    r = phase(nat_run, "ifupdown")
    for name, result in r["boot_unit"].items():
        assert result is not None and result["rc"] == "0", (name, result)
    late = r["network_unit"]
    director = nat_run["director"]
    if nat_run["v6"]:  # its IPv6 VIP is on the NIC: only the late unit can add it
        vip = nat_run["cluster"].vips[0]["address"]
        nic = nat_run["cluster"].hosts[director]["interface"]
        assert late[director] is not None and f"addr add {vip}/128 dev {nic}" in late[director]["output"], late[director]
    else:
        assert late[director] is None, "the director has nothing on its NIC"
    for name in nat_run["reals"]:
        assert late[name] is not None and late[name]["rc"] == "0", (name, late[name])
        assert f"route replace default via {nat_run['nat_ip']}" in late[name]["output"], late[name]["output"]
        assert r["routes"][name].startswith(f"default via {nat_run['nat_ip']} dev {nat_run['cluster'].hosts[name]['interface']}"), r["routes"]
    assert check_answers(nat_run["cluster"], r["answers"]) == []
    assert second_run_problems(nat_run["cluster"], {"second": r["setup"], "before": r["setup_before"], "after": r["setup_after"]}, after_boot=True) == []


@pytest.mark.parametrize("nat_run", [k for k in sorted(CLUSTERS) if k.endswith("-ipv6")], indirect=True)
def test_ipv6_nat_director_keeps_taking_router_advertisements(nat_run):
    """With forwarding on, the kernel ignores RAs unless accept_ra is 2: lvsgen sets 2 on the
    client-side NIC, so a default route learned from RAs survives turning NAT on."""
    assert nat_run["v6"]
    r = phase(nat_run, "ra")
    assert all(x["rc"] == 0 for x in r["first"].values()), r["first"]
    assert (r["forwarding"], r["accept_ra"]) == ("1", "2"), r
    assert r["learned"].startswith("default via fe80:"), r
    assert r["learned_with_1"] == "", f"negative control: with accept_ra 1 the RA was still taken: {r}"
    heal = r["heal"][nat_run["director"]]
    assert heal["rc"] == 0 and "accept_ra=2" in heal["output"], heal
    assert r["learned_healed"].startswith("default via fe80:"), r
