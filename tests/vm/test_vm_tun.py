"""LVS-TUN (IPIP, GUE, GRE) in a real kernel (pytest -m vm), with lvsgen's artifacts as they are.

One VM boot runs cluster/driver.py's tun phase on each TUN cluster file: tests/vm/tun/cluster.json
(a director and two real servers; weighted TCP and rr UDP services over IPIP, two GUE services
on two ports, one with the outer UDP checksum, and one GRE service), or the files
LVSGEN_VM_CLUSTER_TUN names (tests/vm/README.md). Every name (hosts, interfaces, VIPs, ports,
tunnel devices) comes from the file. It checks, on a kernel without the tunnel modules:
- every setup.sh succeeds and loads the modules the file's tunnel types need (ipip, fou, ip_gre);
- the split, that requests arrive on each real server's tunnel devices (tunl0 for IPIP and GUE,
  gre0 for GRE), that replies bypass the director (OutPkts 0), and that only the director
  answers ARP for a VIP;
- the table the director saves (ipvsadm -S -n), its thresholds and timeouts are what the file
  says (expect.table_problems), and each real server's --tun-type, --tun-port and checksum
  option are the file's tunnel, field by field;
- each real server has exactly the GUE ports open (ip fou show) that the file's GUE services give it;
- reverse-path filtering is loose on the tunnel devices only, conf.all and the NIC as the host had them.
Negative controls, each healed by setup.sh: one real server's GUE port closed by hand (ip fou
del): its turns of that service fail while the others answer, and setup.sh opens the port again;
strict rp_filter on the tunnel devices: every request is dropped, setup.sh puts 2 back and the
cluster serves again. Last, on the converged cluster, a second run says "no changes" and leaves
every host's state byte for byte as it was. Expectations come from the raw cluster file; a
file without a GUE service skips the GUE negative control, saying so.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import expect  # noqa: E402
from driven import boot_phase, cluster_files, one_network, second_run_problems  # noqa: E402
from expect import Cluster, check_answers, expected_answers, table_problems  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTERS = cluster_files("tun", [HERE / "tun" / "cluster.json"])

# README (service `tunnel`): ipip and gue decapsulate on tunl0, gre on gre0; the modules each
# needs (gue: fou, and ipip for the tunl0 its packets go to; gre: ip_gre).
DEVICE = {"ipip": expect.TUNNEL, "gue": expect.TUNNEL, "gre": "gre0"}
MODULES = {"ipip": {"ipip"}, "gue": {"ipip", "fou"}, "gre": {"ip_gre"}}


def real_servers(cluster: Cluster) -> list[str]:
    return sorted(name for name, h in cluster.hosts.items() if h["role"] != "director")


def tunnel_devices(cluster: Cluster, name: str) -> list[str]:
    """The devices a real server holds its VIPs on (expect.Cluster.addresses), its NIC aside."""
    return sorted({dev for _, dev in cluster.addresses(name)} - {cluster.hosts[name]["interface"]})


def raw_tunnels(cluster: Cluster) -> list[dict]:
    """Every TUN service of the raw document with its tunnel, the schema's defaults filled in:
    {group (as expect.Cluster's), selector (how ipvsadm -S names the service), director, type,
    port, checksum, real_servers}."""
    out = []
    for vip_name, vip in cluster.doc["vips"].items():
        address = ipaddress.ip_address(vip["address"])
        for index, raw in enumerate(vip["services"]):
            if raw.get("forwarding") != "tun":
                continue
            tunnel = raw.get("tunnel", {})
            if "fwmark" in raw:
                selector = f"-f {raw['fwmark']}" + (" -6" if address.version == 6 else "")
            else:
                where = f"[{address}]" if address.version == 6 else str(address)
                selector = f"{expect.PROTOCOL_FLAG[raw.get('protocol', expect.DEFAULT_PROTOCOL)]} {where}:{raw['port']}"
            out.append({
                "group": f"$.vips.{vip_name}.services[{index}]", "selector": selector, "director": vip["director"],
                "type": tunnel.get("type", expect.DEFAULT_TUNNEL_TYPE), "port": tunnel.get("port"),
                "checksum": tunnel.get("checksum", expect.DEFAULT_TUNNEL_CHECKSUM), "real_servers": raw["real_servers"],
            })
    return out


def gue_ports(cluster: Cluster) -> dict[str, list[int]]:
    """{real server: the GUE ports the file's GUE services give it} for every real server."""
    out = {name: set() for name in real_servers(cluster)}
    for t in raw_tunnels(cluster):
        if t["type"] == "gue":
            for rs in t["real_servers"]:
                if "host" in rs:
                    out[rs["host"]].add(t["port"])
    return {name: sorted(ports) for name, ports in out.items()}


def gue_victim(cluster: Cluster) -> dict | None:
    """The GUE negative control: the first GUE service (by key) with an exact split, and the first
    of its real servers (sorted) that takes turns. None when the file has no GUE service."""
    tunnels = {t["group"]: t for t in raw_tunnels(cluster)}
    gue = sorted((s for s in cluster.services if s["tunnel"] == "gue"), key=lambda s: s["key"])
    if not gue:
        return None
    split = [s for s in gue if expected_answers(s)[1]]
    if not split:
        pytest.fail(f"the GUE negative control needs a GUE service with an exact split (rr or wrr, no persistence): {[s['key'] for s in gue]}")
    svc = split[0]
    n, counts, _ = expected_answers(svc)
    return {"key": svc["key"], "host": sorted(counts)[0], "port": tunnels[svc["group"]]["port"],
            "item": {"key": svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n}}


def topology(cluster: Cluster) -> dict:
    other = [s["key"] for s in cluster.services if s["forwarding"] != "tun"]
    if other or not cluster.services:
        pytest.fail(f"the tun phase runs a cluster of TUN services only; {cluster.doc['cluster']} has others: {other}")
    return one_network(cluster, "tun", tun={
        "devices": {name: tunnel_devices(cluster, name) for name in real_servers(cluster)},
        "gue": gue_victim(cluster),
    })


@pytest.fixture(scope="module", params=CLUSTERS, ids=[p.parent.name + "-" + p.stem for p in CLUSTERS])
def tun_run(request, tmp_path_factory):
    cluster, r, _ = boot_phase(tmp_path_factory, request.param, "tun", topology)
    return {"cluster": cluster, "r": r, "reals": real_servers(cluster)}


def test_every_setup_sh_succeeds_on_a_bare_kernel_and_loads_the_tunnel_modules(tun_run):
    r, cluster = tun_run["r"], tun_run["cluster"]
    assert r["bare"] == [] and r["bare_tunnels"] == [], (r["bare"], r["bare_tunnels"])
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in cluster.hosts}, r["first"]
    needed = set().union(*(MODULES[s["tunnel"]] for s in cluster.services))
    assert needed and needed <= set(r["modules"]), (sorted(needed), r["modules"])


def test_tun_serves_in_the_scheduled_split(tun_run):
    assert check_answers(tun_run["cluster"], tun_run["r"]["answers"]) == []


def test_requests_arrive_on_the_tunnel_devices_and_replies_bypass_the_director(tun_run):
    r, cluster = tun_run["r"], tun_run["cluster"]
    assert set(r["rx"]) == set(tun_run["reals"]), r["rx"]
    # every (real server, device) of a service the real server takes turns in
    receiving = sorted({(name, DEVICE[s["tunnel"]]) for s in cluster.services for name, w in s["weights"].items() if w > 0})
    assert receiving, "no real server takes turns in any service"
    assert all(r["rx"][name].get(dev, 0) > 0 for name, dev in receiving), (receiving, r["rx"])
    for svc in cluster.services:
        conns, inpkts, outpkts = r["stats"][svc["director"]][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0, (svc["ipvs_key"], r["stats"])
        assert outpkts == 0, f"{svc['ipvs_key']}: OutPkts {outpkts}: replies went through the director"


def test_only_the_director_answers_arp_for_the_vip(tun_run):
    arp = tun_run["r"]["arp"]
    assert set(arp) == {v["address"] for v in tun_run["cluster"].vips}, arp
    for vip, seen in arp.items():
        assert seen["macs"] == [seen["director_mac"]], (vip, seen)


def test_the_saved_table_thresholds_and_timeouts_are_what_the_file_says(tun_run):
    assert table_problems(tun_run["cluster"], tun_run["r"]["tables"]) == []


def test_each_real_server_has_the_files_tunnel_type_port_and_checksum(tun_run):
    """ipvsadm -S -n prints --tun-type for every TUN real server, --tun-port for gue, and the
    checksum option for gue and gre: each as the file's service says (the schema's defaults
    where it says nothing)."""
    tables = tun_run["r"]["tables"]
    tunnels = raw_tunnels(tun_run["cluster"])
    assert tunnels, "the file has no TUN service"
    for t in tunnels:
        saved = tables[t["director"]]["saved"].splitlines()
        lines = [line for line in saved if line.startswith(f"-a {t['selector']} -r ")]
        assert len(lines) == len(t["real_servers"]) > 0, (t["group"], t["selector"], lines)
        want = {"forwarding": "-i", "--tun-type": t["type"],
                "--tun-port": str(t["port"]) if t["type"] == "gue" else None,
                "checksum": expect.CHECKSUM_FLAG[t["checksum"]] if t["type"] in ("gue", "gre") else None}
        for line in lines:
            words = line.split()
            got = {"forwarding": next((w for w in words if w in ("-g", "-i", "-m")), None),
                   "--tun-type": words[words.index("--tun-type") + 1] if "--tun-type" in words else None,
                   "--tun-port": words[words.index("--tun-port") + 1] if "--tun-port" in words else None,
                   "checksum": next((w for w in words if w in expect.CHECKSUM_FLAG.values()), None)}
            assert got == want, (t["group"], line)


def test_each_real_server_has_exactly_the_gue_ports_of_its_services_open(tun_run):
    fou = tun_run["r"]["fou"]
    want = gue_ports(tun_run["cluster"])
    assert set(fou) == set(want) == set(tun_run["reals"]), fou
    for name, ports in want.items():
        assert sorted(fou[name].splitlines()) == sorted(f"port {p} gue" for p in ports), (name, fou[name], ports)


def test_rp_filter_is_loose_on_the_tunnel_devices_only(tun_run):
    """lvsgen sets 2 on each tunnel device and leaves conf.all and the NIC as the host had them:
    the kernel uses the larger of conf.all and the device's value."""
    r, cluster = tun_run["r"], tun_run["cluster"]
    assert set(r["rp_filter"]) == set(tun_run["reals"]), r["rp_filter"]
    for name, values in r["rp_filter"].items():
        before, nic, devices = r["rp_filter_before"][name], cluster.hosts[name]["interface"], tunnel_devices(cluster, name)
        assert devices, f"{name} holds no VIP on a tunnel device"
        assert all(values[dev] == "2" for dev in devices), (name, values)
        assert (values["all"], values[nic]) == (before["all"], before[nic]), (name, before, values)
        assert all(before[dev] == "none" for dev in devices), f"{name}: a tunnel device existed before setup.sh loaded its module: {before}"


def _gue(tun_run) -> dict:
    victim = gue_victim(tun_run["cluster"])
    if victim is None:
        pytest.skip(f"{tun_run['cluster'].doc['cluster']} has no GUE service")
    return victim


def test_negative_control_a_closed_gue_port_fails_its_turns_until_setup_opens_it(tun_run):
    r, cluster = tun_run["r"], tun_run["cluster"]
    victim = _gue(tun_run)
    key, host, port = victim["key"], victim["host"], victim["port"]
    svc = next(s for s in cluster.services if s["key"] == key)
    # the port was closed on the victim only
    assert f"port {port} gue" not in r["gue_fou_closed"][host].splitlines(), r["gue_fou_closed"]
    assert {n: t for n, t in r["gue_fou_closed"].items() if n != host} == {n: t for n, t in r["fou"].items() if n != host}
    # its turns fail, the others answer as the split says
    _, split, _ = expected_answers(svc)
    got = r["gue_closed"][key]
    others = {name: got.count(name) for name in set(got) if not name.startswith("ERR")}
    assert host not in got and sum(a.startswith("ERR") for a in got) == split[host], (host, got)
    assert others == {name: n for name, n in split.items() if name != host}, (split, got)
    # setup.sh opens it again, there only, and the service answers fully
    heal = r["gue_heal"]
    assert all(x["rc"] == 0 for x in heal.values()), heal
    assert f"+ ip fou add port {port} gue" in heal[host]["output"], heal[host]
    assert not [n for n, x in heal.items() if n != host and "ip fou add" in x["output"]], heal
    assert r["gue_fou_healed"] == r["fou"], r["gue_fou_healed"]
    assert check_answers(SimpleNamespace(services=[svc]), r["gue_healed"]) == []


def test_negative_control_strict_rp_filter_drops_every_request(tun_run):
    r, cluster = tun_run["r"], tun_run["cluster"]
    answers = r["answers_strict"]
    assert set(answers) == {s["key"] for s in cluster.services}, answers
    assert all(got and all(a.startswith("ERR") for a in got) for got in answers.values()), answers
    assert all(x["rc"] == 0 for x in r["heal"].values()), r["heal"]
    for name in tun_run["reals"]:
        for dev in tunnel_devices(cluster, name):
            assert f"sysctl -w net.ipv4.conf.{dev}.rp_filter=2" in r["heal"][name]["output"], (name, dev, r["heal"][name])
    assert check_answers(cluster, r["answers_healed"]) == []


def test_a_second_run_changes_nothing(tun_run):
    assert second_run_problems(tun_run["cluster"], tun_run["r"]) == []
