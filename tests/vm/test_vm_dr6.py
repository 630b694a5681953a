"""IPv6 LVS-DR in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot runs cluster/driver.py's dr6 phase on tests/vm/dr6/cluster.json: a director whose
IPv6 VIP is on its NIC, and two real servers that hold it without answering for it, one on
lvsgen's dummy device and one on lo. It checks the split (wrr TCP, rr UDP), that replies
bypass the director (OutPkts 0), and that only the director answers a neighbour solicitation
for the VIP: IPv6 neighbour discovery answers only for addresses of the interface the
solicitation came in on, which is why IPv6 needs no arp_ignore. Negative control: the VIP put
by hand on a real server's NIC gives a second answer. A second run changes nothing.
Expectations come from the raw cluster file.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import vm  # noqa: E402
from cases import lvsgen  # noqa: E402

from driven import run_driver  # noqa: E402
from expect import Cluster, check_answers, expected_answers  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTER = HERE / "dr6" / "cluster.json"


def topology(cluster: Cluster) -> dict:
    hosts = []
    for name, host in cluster.hosts.items():
        own = ipaddress.ip_interface(host["address"])
        hosts.append({
            "name": name, "hostname": cluster.hostname(name), "role": host["role"],
            "interface": host["interface"], "network": str(own.network), "own_address": str(own),
            "gateway": str(own.network[1]),
            "serve": sorted({f"{svc['protocol']}:{svc['vip']}:{svc['port']}" for svc in cluster.services if name in svc["weights"]}),
            "addresses": [list(a) for a in cluster.addresses(name)], "own_units": {},
        })
    plan = []
    for svc in cluster.services:
        n, _, _ = expected_answers(svc)
        plan.append({"key": svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n})
    network = ipaddress.ip_network(hosts[0]["network"])
    return {
        "hosts": hosts, "networks": [str(network)],
        "client": {"name": "client", "interface": "eth0", "address": f"{network[0x50]}/{network.prefixlen}", "network": str(network)},
        "vips": [{"address": v["address"], "director": v["director"]} for v in cluster.vips],
        "plan": plan, "dr6": {"control": "rs1"},
        "big": [], "mutants": {}, "trees": {"main": "out"}, "phases": ["dr6"],
    }


@pytest.fixture(scope="module")
def dr6_run(tmp_path_factory):
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("vm-dr6")
    build = lvsgen("build", str(CLUSTER), "-o", str(work / "out"))
    assert build.returncode == 0, build.stderr
    cluster = Cluster(CLUSTER)
    run, results = run_driver(work, topology(cluster), timeout=900)
    r = results.get("dr6")
    assert r is not None and "error" not in r, (r or {}).get("error", "") + "\n" + run.diagnostics()
    return {"cluster": cluster, "r": r, "rules": (work / "out" / "lb" / "etc" / "lvsgen" / "ipvsadm.rules").read_text()}


def test_every_setup_sh_succeeds_and_the_table_is_the_file(dr6_run):
    r = dr6_run["r"]
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in dr6_run["cluster"].hosts}, r["first"]
    assert sorted(r["saved"]["lb"].splitlines()) == sorted(dr6_run["rules"].splitlines())


def test_ipv6_dr_serves_in_the_scheduled_split(dr6_run):
    assert check_answers(dr6_run["cluster"], dr6_run["r"]["answers"]) == []


def test_replies_bypass_the_director(dr6_run):
    r = dr6_run["r"]
    for svc in dr6_run["cluster"].services:
        conns, inpkts, outpkts = r["stats"]["lb"][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0, (svc["ipvs_key"], r["stats"])
        assert outpkts == 0, f"{svc['ipvs_key']}: OutPkts {outpkts}: replies went through the director"


def test_only_the_director_answers_neighbour_solicitation(dr6_run):
    r = dr6_run["r"]
    for vip, seen in r["nd"].items():
        assert seen["macs"] == [seen["director_mac"]], (vip, seen, r["macs"])


def test_negative_control_the_vip_on_a_real_servers_nic_answers_too(dr6_run):
    r = dr6_run["r"]
    for vip, seen in r["nd_control"].items():
        assert sorted(seen["macs"]) == sorted([seen["director_mac"], r["macs"]["rs1"]]), (vip, seen, r["macs"])


def test_a_second_run_changes_nothing(dr6_run):
    assert all(x["rc"] == 0 and "no changes" in x["output"] for x in dr6_run["r"]["second"].values()), dr6_run["r"]["second"]
