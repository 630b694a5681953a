"""IPv6 LVS-DR in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot runs cluster/driver.py's dr6 phase on tests/vm/dr6/cluster.json: a director whose
IPv6 VIP is on its NIC, and two real servers that hold it without answering for it, one on
lvsgen's dummy device and one on lo. It checks the split (wrr TCP, rr UDP), that replies
bypass the director (OutPkts 0), and that only the director answers a neighbour solicitation
for the VIP: IPv6 neighbour discovery answers only for addresses of the interface the
solicitation came in on, which is why IPv6 needs no arp_ignore. Negative control: the VIP put
by hand on a real server's NIC gives a second answer. A firewall-mark service (-f 5 -6, ports 443
and 8443, persistent) keeps the client on one real server across both ports. A second run
changes nothing.
Expectations come from the raw cluster file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from driven import boot_phase, one_network  # noqa: E402
from expect import check_answers  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTER = HERE / "dr6" / "cluster.json"


@pytest.fixture(scope="module")
def dr6_run(tmp_path_factory):
    cluster, r, work = boot_phase(tmp_path_factory, CLUSTER, "dr6", lambda c: one_network(c, "dr6", dr6={"control": "rs1"}))
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


def test_an_ipv6_firewall_mark_service_keeps_a_client_on_one_real_server_across_its_ports(dr6_run):
    r = dr6_run["r"]
    assert "-A -f 5 -6 -s rr -p 300" in dr6_run["rules"].splitlines()
    got = r["answers"]["tcp 2001:db8:10::100:443"] + r["answers"]["tcp 2001:db8:10::100:8443"]
    assert len(got) == 8 and len(set(got)) == 1 and got[0] in ("rs1", "rs2"), r["answers"]
    assert r["stats"]["lb"]["FWM 5 IPv6"][0] == 8, r["stats"]  # eight connections, one service
