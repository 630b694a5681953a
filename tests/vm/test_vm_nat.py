"""LVS-NAT in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot runs cluster/driver.py on tests/vm/nat/cluster.json: a director with two NICs
(clients on 203.0.113.0/24, real servers on 198.51.100.0/24), two real servers that listen on
remapped ports, a TCP and a UDP service. Phases:
- nat:      setup.sh on every host; traffic through the VIP (the split the schedulers give);
            replies through the director (OutPkts); each real server's default route via the
            director; the director's forwarding policy against a client that routes straight
            to the real servers, with deleting lvsgen's table as the control and setup.sh
            healing it; a real server without its route via the director (negative control);
- ifupdown: a reboot without networkd: the boot units' commands alone around the hosts' own
            network, so the real servers' route via the director comes from
            lvsgen-network.service.
Expectations come from the raw cluster file (tests/vm/expect.py), not from lvsgen.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import vm  # noqa: E402
from cases import lvsgen  # noqa: E402

from expect import Cluster, check_answers, expected_answers  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTER = HERE / "nat" / "cluster.json"
CLIENT = "203.0.113.50/24"
GATEWAYS = {"203.0.113.0/24": "203.0.113.254", "198.51.100.0/24": "198.51.100.254"}


def topology(cluster: Cluster) -> dict:
    hosts = []
    for name, host in cluster.hosts.items():
        own = ipaddress.ip_interface(host["address"])
        entry = {
            "name": name, "hostname": cluster.hostname(name), "role": host["role"],
            "interface": host["interface"], "network": str(own.network), "own_address": str(own),
            # Not the director: the real servers' own default route, which lvsgen replaces.
            "gateway": GATEWAYS[str(own.network)],
            "serve": sorted({f"{svc['protocol']}:{own.ip}:{svc['ports'][name]}" for svc in cluster.services if name in svc["weights"]}),
            "addresses": [list(a) for a in cluster.addresses(name)], "own_units": {},
        }
        if "nat_address" in host:
            nat = ipaddress.ip_interface(host["nat_address"])
            entry["extra_nics"] = [{"interface": host["nat_interface"], "network": str(nat.network), "own_address": str(nat)}]
        hosts.append(entry)
    director = cluster.hosts[cluster.directors()[0]]
    plan = []
    for svc in cluster.services:
        n, _, _ = expected_answers(svc)
        plan.append({"key": svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n})
    direct = [
        {"key": f"{svc['protocol']} {name}", "protocol": svc["protocol"], "n": 1,
         "vip": str(ipaddress.ip_interface(cluster.hosts[name]["address"]).ip), "port": svc["ports"][name]}
        for svc in cluster.services for name in sorted(svc["weights"])
    ]
    return {
        "hosts": hosts,
        "networks": sorted(GATEWAYS),
        "client": {"name": "client", "interface": "eth0", "address": CLIENT, "network": "203.0.113.0/24"},
        "vips": [{"address": v["address"], "director": v["director"]} for v in cluster.vips],
        "plan": plan, "big": [], "mutants": {},
        "trees": {"main": "out"},
        "nat": {"rs_network": "198.51.100.0/24", "director_front": str(ipaddress.ip_interface(director["address"]).ip),
                "direct": direct, "unrouted": "app1"},
        "phases": ["nat", "ifupdown"],
    }


@pytest.fixture(scope="module")
def nat_run(tmp_path_factory):
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("vm-nat")
    build = lvsgen("build", str(CLUSTER), "-o", str(work / "out"))
    assert build.returncode == 0, build.stderr
    cluster = Cluster(CLUSTER)
    (work / "topology.json").write_text(json.dumps(topology(cluster), indent=1))
    for f in ("run.sh", "driver.py", "peer.py"):
        shutil.copy2(HERE / "cluster" / f, work / f)
    run = vm.boot(work, timeout=1200)
    print(run.summary())
    results_file = work / "results.json"
    assert results_file.exists(), run.diagnostics()
    (work / "console.txt").write_text(run.output)
    return {"cluster": cluster, "results": json.loads(results_file.read_text()), "run": run, "work": work}


def phase(nat_run, name: str) -> dict:
    r = nat_run["results"].get(name)
    assert r is not None, f"phase {name} did not run\n" + nat_run["run"].diagnostics()
    assert "error" not in r, r["error"] + "\n" + nat_run["run"].diagnostics()
    return r


def test_every_setup_sh_succeeds_on_a_bare_kernel(nat_run):
    r = phase(nat_run, "nat")
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in nat_run["cluster"].hosts}, r["first"]
    assert {"ip_vs", "ip_vs_rr", "ip_vs_wrr", "nf_tables"} <= set(r["modules"]), r["modules"]


def test_nat_serves_through_the_vip_on_the_remapped_ports(nat_run):
    r = phase(nat_run, "nat")
    assert check_answers(nat_run["cluster"], r["answers"]) == []


def test_nat_replies_go_back_through_the_director(nat_run):
    r = phase(nat_run, "nat")
    for svc in nat_run["cluster"].services:
        conns, inpkts, outpkts = r["stats"]["lb"][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0 and outpkts > 0, (svc["ipvs_key"], r["stats"]["lb"])


def test_real_servers_route_through_the_director_and_the_director_answers_arp(nat_run):
    r = phase(nat_run, "nat")
    assert r["routes"]["app1"].startswith("default via 198.51.100.1 dev eth0"), r["routes"]
    assert r["routes"]["app2"].startswith("default via 198.51.100.1 dev eth0"), r["routes"]
    assert r["routes"]["lb"].startswith("default via 203.0.113.254 dev eth0"), "the director's own route was changed"
    for vip, seen in r["arp"].items():
        assert seen["macs"] == [seen["director_mac"]], (vip, seen)


def test_saved_table_equals_the_rules_file(nat_run):
    rules = (nat_run["work"] / "out/lb/etc/lvsgen/ipvsadm.rules").read_text()
    assert sorted(phase(nat_run, "nat")["saved"]["lb"].splitlines()) == sorted(rules.splitlines())


def _all_failed(answers: dict) -> bool:
    return bool(answers) and all(a.startswith("ERR") for got in answers.values() for a in got)


def _all_answered(answers: dict) -> bool:
    return bool(answers) and all(len(got) == 1 and not got[0].startswith("ERR") for got in answers.values())


def test_the_director_forwards_nothing_but_lvs_replies(nat_run):
    """A client that routes the real servers' network via the director cannot reach them."""
    r = phase(nat_run, "nat")
    assert "table inet lvsgen" in r["ruleset"] and "policy drop" in r["ruleset"], r["ruleset"]
    assert _all_failed(r["direct_blocked"]), r["direct_blocked"]


def test_control_without_lvsgens_table_the_real_servers_are_reachable(nat_run):
    """The same requests with lvsgen's table deleted get answers: the table is what blocks."""
    r = phase(nat_run, "nat")
    assert _all_answered(r["direct_open"]), r["direct_open"]


def test_setup_sh_restores_a_deleted_policy_and_then_changes_nothing(nat_run):
    r = phase(nat_run, "nat")
    assert r["heal"]["lb"]["rc"] == 0, r["heal"]["lb"]["output"]
    assert "+ nft -f /etc/lvsgen/forward.nft" in r["heal"]["lb"]["output"], r["heal"]["lb"]["output"]
    assert _all_failed(r["direct_after_heal"]), r["direct_after_heal"]
    for host, second in r["second"].items():
        assert second["rc"] == 0 and "no changes" in second["output"], (host, second["output"])


def test_negative_control_a_real_server_without_its_route_fails_the_check(nat_run):
    r = phase(nat_run, "nat")
    problems = check_answers(nat_run["cluster"], r["answers_unrouted"])
    assert problems, "with app1's route via the director gone, the answer check still passed"


def test_reboot_without_networkd_restores_the_route_via_the_late_unit(nat_run):
    r = phase(nat_run, "ifupdown")
    for name, result in r["boot_unit"].items():
        assert result is not None and result["rc"] == "0", (name, result)
    late = r["network_unit"]
    assert late["lb"] is None, "the director has nothing on its NIC"
    for name in ("app1", "app2"):
        assert late[name] is not None and late[name]["rc"] == "0", (name, late[name])
        assert "route replace default via 198.51.100.1" in late[name]["output"], late[name]["output"]
        assert r["routes"][name].startswith("default via 198.51.100.1 dev eth0"), r["routes"]
    assert check_answers(nat_run["cluster"], r["answers"]) == []
    for host, result in r["setup"].items():
        assert result["rc"] == 0 and "no changes" in result["output"], (host, result["output"])
