"""IPv6 LVS-DR in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot runs cluster/driver.py's dr6 phase on each IPv6 DR cluster file:
tests/vm/dr6/cluster.json (a director whose IPv6 VIP is on its NIC, and two real servers that
hold it without answering for it, one on lvsgen's dummy device and one on lo; a wrr TCP, an rr
UDP and a persistent firewall-mark service over two ports), or the files LVSGEN_VM_CLUSTER_DR6
names (tests/vm/README.md). Every name comes from the file. It checks the split, that replies
bypass the director (OutPkts 0), and that only the director answers a neighbour solicitation for
each VIP: IPv6 neighbour discovery answers only for addresses of the interface the solicitation
came in on, which is why IPv6 needs no arp_ignore. Negative control: each VIP put by hand on the
NIC of a real server that holds it (the first, sorted) gives a second answer. A persistent
firewall-mark service keeps the client on one real server across all its ports. The table the
director saves, its thresholds and timeouts are what the file says, and on the converged cluster
a second run says "no changes" and leaves every host's state byte for byte as it was. Expectations come from the raw cluster file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from driven import boot_phase, cluster_files, one_network, second_run_problems  # noqa: E402
from expect import Cluster, check_answers, table_problems  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTERS = cluster_files("dr6", [HERE / "dr6" / "cluster.json"])


def controls(cluster: Cluster) -> dict[str, str]:
    """{VIP: the real server whose NIC gets it by hand}: the first (sorted) that holds it."""
    out = {}
    for vip in cluster.vips:
        holders = sorted({name for s in cluster.services if s["vip"] == vip["address"] for name in s["weights"]
                          if cluster.hosts[name]["role"] != "director"})
        if not holders:
            pytest.fail(f"VIP {vip['address']} has no real server for the negative control")
        out[vip["address"]] = holders[0]
    return out


def topology(cluster: Cluster) -> dict:
    other = [s["key"] for s in cluster.services if s["forwarding"] != "dr" or ":" not in s["vip"]]
    if other or not cluster.services:
        pytest.fail(f"the dr6 phase runs a cluster of IPv6 DR services only; {cluster.doc['cluster']} has others: {other}")
    return one_network(cluster, "dr6", dr6={"controls": controls(cluster)})


@pytest.fixture(scope="module", params=CLUSTERS, ids=[p.parent.name + "-" + p.stem for p in CLUSTERS])
def dr6_run(request, tmp_path_factory):
    cluster, r, _ = boot_phase(tmp_path_factory, request.param, "dr6", topology)
    return {"cluster": cluster, "r": r}


def test_every_setup_sh_succeeds_on_a_bare_kernel(dr6_run):
    r = dr6_run["r"]
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in dr6_run["cluster"].hosts}, r["first"]


def test_the_saved_table_thresholds_and_timeouts_are_what_the_file_says(dr6_run):
    assert table_problems(dr6_run["cluster"], dr6_run["r"]["tables"]) == []


def test_ipv6_dr_serves_in_the_scheduled_split(dr6_run):
    assert check_answers(dr6_run["cluster"], dr6_run["r"]["answers"]) == []


def test_replies_bypass_the_director(dr6_run):
    r = dr6_run["r"]
    for svc in dr6_run["cluster"].services:
        conns, inpkts, outpkts = r["stats"][svc["director"]][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0, (svc["ipvs_key"], r["stats"])
        assert outpkts == 0, f"{svc['ipvs_key']}: OutPkts {outpkts}: replies went through the director"


def test_only_the_director_answers_neighbour_solicitation(dr6_run):
    r = dr6_run["r"]
    assert set(r["nd"]) == {v["address"] for v in dr6_run["cluster"].vips}, r["nd"]
    for vip, seen in r["nd"].items():
        assert seen["macs"] == [seen["director_mac"]], (vip, seen, r["macs"])


def test_negative_control_the_vip_on_a_real_servers_nic_answers_too(dr6_run):
    r = dr6_run["r"]
    chosen = controls(dr6_run["cluster"])
    assert set(r["nd_control"]) == set(chosen), r["nd_control"]
    for vip, seen in r["nd_control"].items():
        assert sorted(seen["macs"]) == sorted([seen["director_mac"], r["macs"][chosen[vip]]]), (vip, chosen[vip], seen, r["macs"])


def test_a_second_run_changes_nothing(dr6_run):
    assert second_run_problems(dr6_run["cluster"], dr6_run["r"]) == []


def test_a_persistent_firewall_mark_service_keeps_a_client_on_one_real_server_across_its_ports(dr6_run):
    r, cluster = dr6_run["r"], dr6_run["cluster"]
    groups: dict[str, list[dict]] = {}
    for s in cluster.services:
        if s["fwmark"] is not None and s["persistent"]:
            groups.setdefault(s["group"], []).append(s)  # one entry per port the client tries
    groups = {group: services for group, services in groups.items() if len(services) > 1}
    if not groups:
        pytest.fail(f"{cluster.doc['cluster']} has no persistent firewall-mark service over two or more ports, which this test needs")
    for group, services in groups.items():
        got = [a for s in services for a in r["answers"][s["key"]]]
        members = {name for s in services for name, w in s["weights"].items() if w > 0}
        assert got and len(set(got)) == 1 and got[0] in members, (group, got)
        # one service in the kernel for all its ports: every connection counted there
        assert r["stats"][services[0]["director"]][services[0]["ipvs_key"]][0] == len(got), (group, r["stats"])
