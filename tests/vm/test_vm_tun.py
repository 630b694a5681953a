"""LVS-TUN (IPIP) in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot runs cluster/driver.py's tun phase on tests/vm/tun/cluster.json: a director and
two real servers that receive requests encapsulated in IPIP, a weighted TCP service and a UDP
service. It checks the split, that requests arrive on each real server's tunl0, that replies
bypass the director (OutPkts 0), that only the director answers ARP for the VIP, and that
reverse-path filtering is loose on tunl0 only. Negative control: with strict rp_filter on
tunl0 (what a host has without lvsgen's setting), every request is dropped; setup.sh puts the
setting back and the cluster serves again. Expectations come from the raw cluster file.
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

CLUSTER = HERE / "tun" / "cluster.json"


@pytest.fixture(scope="module")
def tun_run(tmp_path_factory):
    cluster, r, _ = boot_phase(tmp_path_factory, CLUSTER, "tun", lambda c: one_network(c, "tun"))
    return {"cluster": cluster, "r": r}


def test_every_setup_sh_succeeds_on_a_bare_kernel(tun_run):
    r = tun_run["r"]
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in tun_run["cluster"].hosts}, r["first"]
    for name in ("far1", "far2"):
        assert "ipip" in r["modules"][name], r["modules"]


def test_tun_serves_in_the_scheduled_split(tun_run):
    assert check_answers(tun_run["cluster"], tun_run["r"]["answers"]) == []


def test_requests_arrive_on_tunl0_and_replies_bypass_the_director(tun_run):
    r = tun_run["r"]
    assert all(n > 0 for n in r["tunl0_rx"].values()), r["tunl0_rx"]
    for svc in tun_run["cluster"].services:
        conns, inpkts, outpkts = r["stats"]["lb"][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0, (svc["ipvs_key"], r["stats"])
        assert outpkts == 0, f"{svc['ipvs_key']}: OutPkts {outpkts}: replies went through the director"


def test_only_the_director_answers_arp_for_the_vip(tun_run):
    for vip, seen in tun_run["r"]["arp"].items():
        assert seen["macs"] == [seen["director_mac"]], (vip, seen)


def test_rp_filter_is_loose_on_tunl0_only(tun_run):
    """lvsgen sets 2 on tunl0 and leaves conf.all and the NIC as the host had them: the
    kernel uses the larger of conf.all and conf.tunl0."""
    r = tun_run["r"]
    for name, values in r["rp_filter"].items():
        before = r["rp_filter_before"][name]
        assert values["tunl0"] == "2", (name, values)
        assert (values["all"], values["eth0"]) == (before["all"], before["eth0"]), (name, before, values)
        assert before["tunl0"] == "none", "tunl0 existed before setup.sh loaded ipip"


def test_negative_control_strict_rp_filter_drops_every_request(tun_run):
    r = tun_run["r"]
    answers = r["answers_strict"]
    assert answers and all(a.startswith("ERR") for got in answers.values() for a in got), answers
    assert all(x["rc"] == 0 and "sysctl -w net.ipv4.conf.tunl0.rp_filter=2" in x["output"]
               for name, x in r["heal"].items() if name != "lb"), r["heal"]
    assert check_answers(tun_run["cluster"], r["answers_healed"]) == []
