"""Service options and protocols in a real kernel (pytest -m vm), with lvsgen's artifacts as
they are: scheduler flags, one-packet scheduling, the SIP persistence engine, SCTP and
localnode.

One VM boot runs cluster/driver.py's features phase on tests/vm/features/cluster.json: a DR
director with two real servers. Every option is shown by what traffic does, and undone by hand
(ipvsadm -E/-e) as a negative control, after which setup.sh must find the drift and put the
option back (these options are not in /proc/net/ip_vs, so this also proves the engine's
'ipvsadm -S -n' path):
- sh-fallback: one client hashes to one real server; at weight 0 another one answers. Without
  the flag, the connection is refused.
- one-packet scheduling (-o): UDP requests leave no connection entry; without it they do.
- the SIP persistence engine (--pe sip): requests of one Call-ID stay on one real server, and
  two Call-IDs go to two (rr); with client-address persistence instead, both go to one.
- SCTP: an association through the VIP reaches each real server in turn (rr).
- localnode: the director serves its own VIP, beside a real server (rr).
- IPVS timeouts (ipvs_timeouts): set as the file says, the one it omits left at the kernel's
  value; changed by hand, put back.
- GUE and GRE tunnels (tunnel.type): requests reach each real server in turn; the GUE port is
  open on each (ip fou), GRE arrives on gre0. Negative control: one real server's GUE port
  closed by hand, its turns fail; setup.sh opens it again.
- connection thresholds: rs1 with upper_threshold 1 serves at most one of six requests (a
  connection counts until it expires, inactive ones too); with the threshold taken off by
  hand, rr alternates again; setup.sh puts it back (ipvsadm -S never shows thresholds: the
  engine reads ipvsadm -L -n --thresholds).
- a firewall-mark service (fwmark 7, ports 80 and 8080, persistent): a client keeps one real
  server across both ports. Negative controls: without persistence (ipvsadm -E by hand), rr
  spreads the same requests over both real servers; with the table inet lvsgen deleted by hand
  (no marks), the VIP refuses them; setup.sh puts back each.
- the director's kernel profile: conn_tab_bits from modprobe.d sizes the connection table
  when setup.sh loads ip_vs; the knobs and proxy_arp as the sysctl.d drop-in says.
The table the kernel saves, its thresholds and its timeouts are what the raw file says, and a
second run changes nothing on any host (a state snapshot before and after), right after the
first run and again at the end.
In the same boot, the hidden phase: a first run on a kernel whose HZ no file tells loads a
service with scheduler flags beside a persistent one, and a file without the flags must then
be seen as a change (issue 19). Every service is found in the file by the option it uses, so
another file of the same shape can run through (LVSGEN_VM_CLUSTER_FEATURES, tests/vm/README.md).
Expectations come from the raw cluster file.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from driven import boot_phase, cluster_files, one_network, second_run_problems  # noqa: E402
from expect import (DEFAULT_PROTOCOL, Cluster, expected_table, expected_thresholds, expected_timeouts,  # noqa: E402
                    parse_thresholds, parse_timeouts, table_problems)

pytestmark = pytest.mark.vm

CLUSTER = HERE / "features" / "cluster.json"


def sip_message(call_id: str, vip: str) -> str:
    """A SIP OPTIONS request: the engine reads the Call-ID header of a UDP datagram."""
    return (
        f"OPTIONS sip:director@{vip} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.80:5060\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )


def raw_of(cluster: Cluster, svc: dict) -> dict:
    """The service as the file writes it (svc["group"] is its path, "$.vips.NAME.services[I]")."""
    m = re.fullmatch(r"\$\.vips\.(.+)\.services\[(\d+)\]", svc["group"])
    return cluster.doc["vips"][m[1]]["services"][int(m[2])]


def find(cluster: Cluster, what: str, test) -> dict:
    """The first service (its first port) the file has for a feature, found by what it says."""
    for svc in cluster.services:
        if test(svc, raw_of(cluster, svc)):
            return svc
    raise AssertionError(f"the features cluster has no service for {what}")


def name_of(svc: dict) -> str:
    """The service as ipvsadm names it: -t 192.0.2.1:80, -f 7, -f 5 -6."""
    v6 = ":" in svc["vip"]
    if svc["fwmark"] is not None:
        return f"-f {svc['fwmark']}" + (" -6" if v6 else "")
    where = f"[{svc['vip']}]:{svc['port']}" if v6 else f"{svc['vip']}:{svc['port']}"
    return f"{ {'tcp': '-t', 'udp': '-u', 'sctp': '--sctp-service'}[svc['protocol']]} {where}"


def vip_port(svc: dict) -> str:
    return f"[{svc['vip']}]:{svc['port']}" if ":" in svc["vip"] else f"{svc['vip']}:{svc['port']}"


def features_of(cluster: Cluster) -> dict:
    """Each feature's service, found in the file by the option it uses."""
    def tunnel(kind, checksum):
        return lambda s, r: s["tunnel"] == kind and (r.get("tunnel", {}).get("checksum") == checksum)
    f = {
        "sh": find(cluster, "sh with sh-fallback", lambda s, r: s["scheduler"] == "sh" and "sh-fallback" in s["scheduler_flags"] and s["fwmark"] is None),
        "ops": find(cluster, "one-packet UDP", lambda s, r: r.get("one_packet") and s["protocol"] == "udp" and s["fwmark"] is None),
        "sip": find(cluster, "the SIP engine", lambda s, r: r.get("persistence", {}).get("engine") == "sip"),
        "sctp": find(cluster, "SCTP", lambda s, r: s["protocol"] == "sctp"),
        "local": find(cluster, "localnode", lambda s, r: any(rs.get("localnode") for rs in r["real_servers"])),
        "limited": find(cluster, "an upper threshold", lambda s, r: s["fwmark"] is None and any(s["upper_thresholds"].values())),
        "gue": find(cluster, "GUE", tunnel("gue", None)),
        "gre": find(cluster, "GRE", tunnel("gre", None)),
        "gue_csum": find(cluster, "GUE with csum", tunnel("gue", "csum")),
        "gue_remcsum": find(cluster, "GUE with remcsum", tunnel("gue", "remcsum")),
        "mark": find(cluster, "a persistent firewall-mark service", lambda s, r: s["fwmark"] is not None and s["persistent"] and s["group_size"] >= 2),
    }
    f["marks"] = [s for s in cluster.services if s["group"] == f["mark"]["group"]]
    return f


def topology(cluster: Cluster) -> dict:
    own = {name: str(ipaddress.ip_interface(h["address"]).ip) for name, h in cluster.hosts.items()}
    f = features_of(cluster)
    sh, ops, sip, limited, gue = f["sh"], f["ops"], f["sip"], f["limited"], f["gue"]
    capped = next(rs for rs, u in sorted(limited["upper_thresholds"].items()) if u)
    sip_raw = raw_of(cluster, sip)

    def item(svc: dict, n: int, key: str | None = None, payload: str | None = None) -> dict:
        out = {"key": key or svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n}
        if payload is not None:
            out["payload"] = payload
        return out

    def sip_items(*calls: str) -> list[dict]:
        return [item(sip, 4, f"call {c}", sip_message(f"{c}@192.0.2.80", sip["vip"])) for c in calls]

    def rs_line(svc: dict, rs: str) -> str:
        """The -r part of a real server's -e by hand: address, forwarding, weight."""
        return ["-r", f"{own[rs]}:{svc['ports'][rs]}", {"dr": "-g", "nat": "-m", "tun": "-i"}[svc["forwarding"]], "-w", str(svc["weights"][rs])]

    per = 4
    return one_network(
        cluster, "features",
        plan=[item(f[k], 2 * len(f[k]["weights"])) for k in ("sctp", "local", "gue", "gre", "gue_csum", "gue_remcsum")]
        + [item(sh, 3), item(ops, 2 * len(ops["weights"]))],
        features={
            "knobs": [f"net.ipv4.vs.{k}" for k in sorted(cluster.hosts[ops["director"]].get("ipvs_sysctls", {}))],
            "ops": {"vip_port": vip_port(ops), "item": item(ops, per), "undo": ["-E", *name_of(ops).split(), "-s", ops["scheduler"]]},
            "sh": {"vip_port": vip_port(sh), "item": item(sh, 3), "flag": name_of(sh).split()[0],
                   "servers": {name: f"{own[name]}:{sh['ports'][name]}" for name in sh["weights"]},
                   "quiesce": {name: ["-e", *name_of(sh).split(), *rs_line(sh, name)[:3], "-w", "0"] for name in sh["weights"]},
                   "undo": ["-E", *name_of(sh).split(), "-s", "sh"]},
            "tunnels": {"item": item(gue, 2 * len(gue["weights"])), "port": raw_of(cluster, gue)["tunnel"]["port"],
                        "victim": sorted(gue["weights"])[0]},
            "thresholds": {"vip_port": vip_port(limited), "item": item(limited, 6),
                           "undo": ["-e", *name_of(limited).split(), *rs_line(limited, capped), "-x", "0", "-y", "0"]},
            # requests alternate between the ports the mark groups
            "fwmark": {"mark": str(f["mark"]["fwmark"]), "undo": ["-E", *name_of(f["mark"]).split(), "-s", f["mark"]["scheduler"]],
                       "items": [item(s, 1, f"{stage} {n} {s['port']}") for stage in ("first", "off", "no-table", "healed")
                                 for n in range(3) for s in f["marks"]]},
            "sip": {"vip_port": vip_port(sip), "items": sip_items("a", "b"),
                    "undo": ["-E", *name_of(sip).split(), "-s", sip["scheduler"], "-p", str(sip_raw["persistence"]["timeout"])],
                    "items_off": sip_items("c", "d"), "items_healed": sip_items("e", "f")},
        },
    )


def hidden_pair(doc: dict) -> tuple[dict, dict, dict]:
    """From the raw file, two clusters for the hidden phase: "with" keeps a service that has
    scheduler flags (which /proc/net/ip_vs cannot show) and a persistent service with nothing
    /proc cannot show (its engine dropped), on the same hosts; "without" is the same without
    the flags. Also {"name", "scheduler"} of the flagged service, as ipvsadm names it."""
    flagged = persistent = None
    for vip_name, vip in doc["vips"].items():
        for svc in vip["services"]:
            if "fwmark" in svc or svc.get("forwarding") not in ("dr", "nat"):
                continue
            if flagged is None and svc.get("scheduler_flags"):
                flagged = (vip_name, svc)
            elif persistent is None and "persistence" in svc and not svc.get("scheduler_flags") and not svc.get("one_packet"):
                persistent = (vip_name, svc)
    assert flagged and persistent, "the features cluster needs a service with scheduler_flags and another persistent one"
    with_doc = copy.deepcopy({k: v for k, v in doc.items() if k != "vips"})
    with_doc["cluster"] = doc["cluster"]
    with_doc["vips"] = {}
    for vip_name, svc in (flagged, persistent):
        svc = copy.deepcopy(svc)
        svc.get("persistence", {}).pop("engine", None)
        vip = with_doc["vips"].setdefault(vip_name, {**copy.deepcopy(doc["vips"][vip_name]), "services": []})
        vip["services"].append(svc)
    without_doc = copy.deepcopy(with_doc)
    for vip in without_doc["vips"].values():
        for svc in vip["services"]:
            svc.pop("scheduler_flags", None)
    vip = ipaddress.ip_address(doc["vips"][flagged[0]]["address"])
    flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[flagged[1].get("protocol", DEFAULT_PROTOCOL)]
    where = f"[{vip}]:{flagged[1]['port']}" if vip.version == 6 else f"{vip}:{flagged[1]['port']}"
    return with_doc, without_doc, {"name": f"{flag} {where}", "scheduler": flagged[1]["scheduler"]}


CLUSTERS = cluster_files("features", [CLUSTER])


@pytest.fixture(scope="module", params=CLUSTERS, ids=[p.name for p in CLUSTERS])
def features_run(request, tmp_path_factory):
    with_doc, without_doc, flagged = hidden_pair(json.loads(Path(request.param).read_text()))

    def topo(cluster: Cluster) -> dict:
        t = topology(cluster)
        t["phases"] = ["hidden", "features"]
        return t

    cluster, r, work = boot_phase(tmp_path_factory, request.param, "features", topo,
                                  extra_trees={"hidden-with": with_doc, "hidden-without": without_doc})
    director = cluster.directors()[0]
    f = features_of(cluster)
    return {"cluster": cluster, "r": r, "director": director, "f": f, "table": expected_table(cluster, director),
            "own": {name: str(ipaddress.ip_interface(h["address"]).ip) for name, h in cluster.hosts.items()},
            "gue_port": raw_of(cluster, f["gue"])["tunnel"]["port"],
            "hidden": r["phases"]["hidden"], "flagged": flagged}


def test_options_proc_cannot_show_are_taken_out_after_a_first_run_without_hz(features_run):
    """Issue 19: the first run (HZ unknown: no /boot/config) loaded a table with scheduler flags
    and a persistent service; a file without the flags must be seen as a change, dry and for
    real, and afterwards the table has no flag and nothing is left to do."""
    h, flagged = features_run["hidden"], features_run["flagged"]
    assert h["bare"] == [] and h["boot_config"] is False, "the premise: a bare kernel whose HZ no file tells"
    assert all(x["rc"] == 0 for x in h["first"].values()), h["first"]
    edit = f"ipvsadm -E {flagged['name']} -s {flagged['scheduler']}\n"
    assert h["dry"]["rc"] == 2 and f"would run: {edit}" in h["dry"]["output"] + "\n", h["dry"]["output"]
    assert h["drop"]["rc"] == 0 and f"+ {edit}" in h["drop"]["output"] + "\n", h["drop"]["output"]
    director = features_run["cluster"].directors()[0]
    service_lines = [x for x in h["tables_without"][director]["saved"].splitlines() if x.startswith(f"-A {flagged['name']} ")]
    assert service_lines == [f"-A {flagged['name']} -s {flagged['scheduler']}"], h["tables_without"]
    assert h["dry_after"]["rc"] == 0 and "no changes" in h["dry_after"]["output"], h["dry_after"]["output"]


def _line(features_run, prefix: str) -> str:
    """The one line of the director's expected table (from the raw file) that starts with PREFIX."""
    found = [x for x in features_run["table"] if x.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def _edit(features_run, svc: dict) -> str:
    """The -E that puts a service back as the file says."""
    return "ipvsadm -E" + _line(features_run, f"-A {name_of(svc)} ")[2:]


def _answers(svc: dict, per: int = 2) -> list[str]:
    """PER answers from each real server with a weight, sorted: what rr gives for PER x servers."""
    return sorted(name for name, w in svc["weights"].items() if w > 0 for _ in range(per))


def test_every_setup_sh_succeeds_and_loads_the_sip_engine(features_run):
    r = features_run["r"]
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in features_run["cluster"].hosts}, r["first"]
    assert "ip_vs_pe_sip" in r["modules"] and "ip_vs_sh" in r["modules"], r["modules"]


def test_the_saved_table_is_what_the_file_says_and_a_second_run_changes_nothing(features_run):
    r, cluster = features_run["r"], features_run["cluster"]
    for run in (r, r["end"]):
        assert table_problems(cluster, run["tables"]) == []
        assert second_run_problems(cluster, run) == []


def test_sctp_and_localnode_serve_in_turn(features_run):
    answers, f = features_run["r"]["answers"], features_run["f"]
    assert sorted(answers[f["sctp"]["key"]]) == _answers(f["sctp"]), answers
    # localnode: the director itself answers, beside the other real servers
    assert sorted(answers[f["local"]["key"]]) == _answers(f["local"]), answers


def test_one_packet_scheduling_leaves_no_connection_entry(features_run):
    r, ops = features_run["r"], features_run["f"]["ops"]
    assert sorted(r["answers"][ops["key"]]) == _answers(ops), r["answers"]
    assert r["ops_conns"] == 0
    # negative control: the same requests without -o leave entries
    assert r["ops_off_answers"][ops["key"]] and all(not a.startswith("ERR") for a in r["ops_off_answers"][ops["key"]]), r["ops_off_answers"]
    assert r["ops_off_conns"] > 0
    heal = r["ops_heal"][features_run["director"]]
    assert heal["rc"] == 0 and _edit(features_run, ops) in heal["output"], heal


def test_sh_fallback_sends_a_quiesced_servers_clients_elsewhere(features_run):
    r, sh = features_run["r"], features_run["f"]["sh"]
    key = sh["key"]
    first = r["sh_first"][key]
    assert len(set(first)) == 1 and first[0] in sh["weights"], first  # sh: one client, one real server
    assert r["sh_quiesce"] == 0
    others = set(sh["weights"]) - {r["sh_hashed"]}
    assert len(set(r["sh_fallback"][key])) == 1 and r["sh_fallback"][key][0] in others and len(r["sh_fallback"][key]) == 3, r["sh_fallback"]
    # negative control: without the flag the hashed server's weight 0 means no server at all
    assert r["sh_no_fallback"][key] and all(a.startswith("ERR") for a in r["sh_no_fallback"][key]), r["sh_no_fallback"]
    heal = r["sh_heal"][features_run["director"]]
    assert heal["rc"] == 0, heal
    assert _edit(features_run, sh) in heal["output"], heal["output"]
    weight = f"-w {sh['weights'][r['sh_hashed']]}"
    assert weight in heal["output"] and r["sh_healed"][key] == first, (heal["output"], r["sh_healed"])


def test_the_sip_engine_keeps_a_call_on_one_real_server(features_run):
    r, sip = features_run["r"], features_run["f"]["sip"]
    members = {name for name, w in sip["weights"].items() if w > 0}

    def servers(answers: dict, call: str) -> set[str]:
        return set(answers[f"call {call}"])

    a, b = servers(r["sip"], "a"), servers(r["sip"], "b")
    assert len(a) == 1 and len(b) == 1 and a != b and a | b <= members, r["sip"]
    # negative control: persistence by client address puts both calls on one real server
    c, d = servers(r["sip_off"], "c"), servers(r["sip_off"], "d")
    assert len(c | d) == 1 and not any(x.startswith("ERR") for x in c | d), r["sip_off"]
    heal = r["sip_heal"][features_run["director"]]
    assert heal["rc"] == 0 and _edit(features_run, sip) in heal["output"], heal
    e, f = servers(r["sip_healed"], "e"), servers(r["sip_healed"], "f")
    assert len(e) == 1 and len(f) == 1 and e != f, r["sip_healed"]


def test_timeouts_are_set_and_put_back(features_run):
    r, cluster = features_run["r"], features_run["cluster"]
    want = expected_timeouts(cluster, features_run["director"])
    assert parse_timeouts(r["timeouts"]) == want, r["timeouts"]
    assert parse_timeouts(r["timeouts_by_hand"]) == (900, 120, 300) != want  # the hand edit really changed them
    heal = r["timeouts_heal"][features_run["director"]]
    assert heal["rc"] == 0 and "+ ipvsadm --set {} {} {}".format(*want) in heal["output"], heal
    assert parse_timeouts(r["timeouts_healed"]) == want


def test_conn_tab_bits_sizes_the_table_when_setup_loads_ip_vs(features_run):
    r = features_run["r"]
    host = features_run["cluster"].hosts[features_run["director"]]
    assert r["ipvs_header"] == f"IP Virtual Server version 1.2.1 (size={2 ** host['conn_tab_bits']})", r["ipvs_header"]
    knobs = {f"net.ipv4.vs.{k}": str(v) for k, v in host["ipvs_sysctls"].items()}
    assert {k: v for k, v in r["knobs"].items() if k in knobs} == knobs, r["knobs"]
    assert r["knobs"][f"net.ipv4.conf.{host['interface']}.proxy_arp"] == "0", r["knobs"]


def test_a_real_server_at_its_upper_threshold_gets_no_new_connections(features_run):
    r, limited = features_run["r"], features_run["f"]["limited"]
    key = limited["key"]
    capped = next(rs for rs, u in sorted(limited["upper_thresholds"].items()) if u)
    upper = limited["upper_thresholds"][capped]
    assert parse_thresholds(r["th_listing"]) == expected_thresholds(features_run["cluster"], features_run["director"]), r["th_listing"]
    others = set(limited["weights"]) - {capped}
    for got in (r["th_first"][key], r["th_healed"][key]):
        assert len(got) == 6 and got.count(capped) <= upper and set(got) - {capped} <= others, got
    off = r["th_off"][key]
    assert off.count(capped) >= 2, off  # negative control: without the cap, rr gives it its turns
    heal = r["th_heal"][features_run["director"]]
    rs_line = _line(features_run, f"-a {name_of(limited)} -r {features_run['own'][capped]}:")
    assert heal["rc"] == 0 and f"+ ipvsadm -e{rs_line[2:]} -x {upper} -y 0" in heal["output"], (rs_line, heal)


def test_gue_and_gre_tunnels_reach_each_real_server(features_run):
    r, f = features_run["r"], features_run["f"]
    for kind in ("gue", "gre", "gue_csum", "gue_remcsum"):
        assert sorted(r["answers"][f[kind]["key"]]) == _answers(f[kind]), (kind, r["answers"])
    port = features_run["gue_port"]
    assert all(f"port {port} gue" in text.splitlines() for text in r["fou"].values()) and r["fou"], r["fou"]
    assert r["gre0_rx"] and all(n > 0 for n in r["gre0_rx"].values()), r["gre0_rx"]


def test_negative_control_a_closed_gue_port_fails_its_turns_until_setup_opens_it(features_run):
    r, gue = features_run["r"], features_run["f"]["gue"]
    key, victim = gue["key"], sorted(gue["weights"])[0]
    got = r["gue_no_port"][key]
    assert victim not in got and sum(a.startswith("ERR") for a in got) == 2 and len(got) == 2 * len(gue["weights"]), got
    heal = r["gue_heal"][victim]
    assert heal["rc"] == 0 and f"+ ip fou add port {features_run['gue_port']} gue" in heal["output"], heal
    assert sorted(r["gue_healed"][key]) == _answers(gue), r["gue_healed"]


def test_a_firewall_mark_service_keeps_a_client_on_one_real_server_across_its_ports(features_run):
    r, mark = features_run["r"], features_run["f"]["mark"]
    fw = r["fwmark"]
    ports = ", ".join(str(x) for x in raw_of(features_run["cluster"], mark)["ports"])
    assert f"dport {{ {ports} }} meta mark set 0x{mark['fwmark']:08x}" in fw["nft"], fw["nft"]
    got = fw["answers"]

    def stage(name: str) -> list[str]:
        return [a for key, answers in sorted(got.items()) if key.startswith(name + " ") for a in answers]

    n = 3 * len(features_run["f"]["marks"])
    first = stage("first")
    assert len(first) == n and len(set(first)) == 1 and first[0] in mark["weights"], got  # every port, one server
    # negative control: the same requests without persistence go to every real server
    assert sorted(set(stage("off"))) == sorted(mark["weights"]), got
    assert "+ " + _edit(features_run, mark) in fw["heal_persistence"][features_run["director"]]["output"], fw["heal_persistence"]
    # negative control: without the marks (the table deleted by hand), nothing takes the packets
    assert stage("no-table") and all(a.startswith("ERR") for a in stage("no-table")), got
    heal = fw["heal_table"][features_run["director"]]
    assert heal["rc"] == 0 and any("+ nft -f " in x and x.endswith("/etc/lvsgen/lvsgen.nft") for x in heal["output"].splitlines()), heal
    healed = stage("healed")
    assert len(healed) == n and len(set(healed)) == 1 and not healed[0].startswith("ERR"), got
    # the thresholds of the mark service's real servers, as the file gives them
    want = {k: v for k, v in expected_thresholds(features_run["cluster"], features_run["director"]).items() if k.startswith(name_of(mark) + " ")}
    assert {k: v for k, v in parse_thresholds(fw["thresholds"]).items() if k.startswith(name_of(mark) + " ")} == want and want, fw["thresholds"]
