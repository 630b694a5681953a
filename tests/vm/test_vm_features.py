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
The table the kernel saves equals the rules file line for line, and a second run changes
nothing. Expectations come from the raw cluster file.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from driven import boot_phase, one_network  # noqa: E402
from expect import Cluster  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTER = HERE / "features" / "cluster.json"


def sip_message(call_id: str) -> str:
    """A SIP OPTIONS request: the engine reads the Call-ID header of a UDP datagram."""
    return (
        "OPTIONS sip:lb@192.0.2.120 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.80:5060\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )


def service(cluster: Cluster, protocol: str, vip: str, port: int) -> dict:
    return next(s for s in cluster.services if (s["protocol"], s["vip"], s["port"]) == (protocol, vip, port))


def topology(cluster: Cluster) -> dict:
    own = {name: str(ipaddress.ip_interface(h["address"]).ip) for name, h in cluster.hosts.items()}
    sh = service(cluster, "tcp", "192.0.2.120", 80)
    ops = service(cluster, "udp", "192.0.2.120", 53)
    sip = service(cluster, "udp", "192.0.2.120", 5060)
    sctp = service(cluster, "sctp", "192.0.2.120", 3868)
    local = service(cluster, "tcp", "192.0.2.121", 80)
    limited = service(cluster, "tcp", "192.0.2.122", 80)
    gue = service(cluster, "tcp", "192.0.2.123", 80)
    gre = service(cluster, "tcp", "192.0.2.123", 81)
    gue_csum = service(cluster, "tcp", "192.0.2.123", 82)
    gue_remcsum = service(cluster, "tcp", "192.0.2.123", 83)
    mark80 = service(cluster, "tcp", "192.0.2.124", 80)
    mark8080 = service(cluster, "tcp", "192.0.2.124", 8080)

    def item(svc: dict, n: int, key: str | None = None, payload: str | None = None) -> dict:
        out = {"key": key or svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n}
        if payload is not None:
            out["payload"] = payload
        return out

    def sip_items(*calls: str) -> list[dict]:
        return [item(sip, 4, f"call {c}", sip_message(f"{c}@192.0.2.80")) for c in calls]

    return one_network(
        cluster, "features",
        plan=[item(sh, 3), item(ops, 4), item(sctp, 4), item(local, 4), item(gue, 4), item(gre, 4), item(gue_csum, 4), item(gue_remcsum, 4)],
        features={
            "ops": {"vip_port": f"{ops['vip']}:{ops['port']}", "item": item(ops, 4)},
            "sh": {"vip_port": f"{sh['vip']}:{sh['port']}", "item": item(sh, 3),
                   "servers": {name: f"{own[name]}:{sh['port']}" for name in sh["weights"]}},
            "tunnels": {"item": item(gue, 4), "port": 6080, "victim": "rs1"},
            "thresholds": {"vip_port": f"{limited['vip']}:{limited['port']}", "item": item(limited, 6),
                           "limited": f"{own['rs1']}:{limited['port']}"},
            # requests alternate between the two ports the mark groups
            "fwmark": {"mark": str(mark80["fwmark"]),
                       "items": [item(s, 1, f"{stage} {n} {s['port']}") for stage in ("first", "off", "no-table", "healed")
                                 for n in range(3) for s in (mark80, mark8080)]},
            "sip": {"vip_port": f"{sip['vip']}:{sip['port']}", "items": sip_items("a", "b"),
                    "items_off": sip_items("c", "d"), "items_healed": sip_items("e", "f")},
        },
    )


@pytest.fixture(scope="module")
def features_run(tmp_path_factory):
    cluster, r, work = boot_phase(tmp_path_factory, CLUSTER, "features", topology)
    return {"cluster": cluster, "r": r, "rules": (work / "out" / "lb" / "etc" / "lvsgen" / "ipvsadm.rules").read_text()}


def test_every_setup_sh_succeeds_and_loads_the_sip_engine(features_run):
    r = features_run["r"]
    assert r["bare"] == []
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in features_run["cluster"].hosts}, r["first"]
    assert "ip_vs_pe_sip" in r["modules"] and "ip_vs_sh" in r["modules"], r["modules"]


def test_the_saved_table_is_the_rules_file_and_a_second_run_changes_nothing(features_run):
    r = features_run["r"]
    assert sorted(r["saved"]["lb"].splitlines()) == sorted(features_run["rules"].splitlines())
    assert sorted(r["saved_end"]["lb"].splitlines()) == sorted(features_run["rules"].splitlines())
    for runs in (r["second"], r["last"]):
        assert all(x["rc"] == 0 and "no changes" in x["output"] for x in runs.values()), runs


def test_sctp_and_localnode_serve_in_turn(features_run):
    answers = features_run["r"]["answers"]
    assert sorted(answers["sctp 192.0.2.120:3868"]) == ["rs1", "rs1", "rs2", "rs2"], answers
    # localnode: the director itself answers, beside rs1
    assert sorted(answers["tcp 192.0.2.121:80"]) == ["lb", "lb", "rs1", "rs1"], answers


def test_one_packet_scheduling_leaves_no_connection_entry(features_run):
    r = features_run["r"]
    assert sorted(r["answers"]["udp 192.0.2.120:53"]) == ["rs1", "rs1", "rs2", "rs2"], r["answers"]
    assert r["ops_conns"] == 0
    # negative control: the same requests without -o leave entries
    assert all(not a.startswith("ERR") for a in r["ops_off_answers"]["udp 192.0.2.120:53"]), r["ops_off_answers"]
    assert r["ops_off_conns"] > 0
    heal = r["ops_heal"]["lb"]
    assert heal["rc"] == 0 and "ipvsadm -E -u 192.0.2.120:53 -s rr -o" in heal["output"], heal


def test_sh_fallback_sends_a_quiesced_servers_clients_elsewhere(features_run):
    r = features_run["r"]
    key = "tcp 192.0.2.120:80"
    first = r["sh_first"][key]
    assert len(set(first)) == 1 and first[0] in ("rs1", "rs2"), first  # sh: one client, one real server
    assert r["sh_quiesce"] == 0
    other = {"rs1": "rs2", "rs2": "rs1"}[r["sh_hashed"]]
    assert r["sh_fallback"][key] == [other] * 3, r["sh_fallback"]
    # negative control: without the flag the hashed server's weight 0 means no server at all
    assert all(a.startswith("ERR") for a in r["sh_no_fallback"][key]), r["sh_no_fallback"]
    heal = r["sh_heal"]["lb"]
    assert heal["rc"] == 0, heal
    assert "ipvsadm -E -t 192.0.2.120:80 -s sh -b sh-fallback" in heal["output"], heal["output"]
    assert "-w 1" in heal["output"] and r["sh_healed"][key] == first, (heal["output"], r["sh_healed"])


def test_the_sip_engine_keeps_a_call_on_one_real_server(features_run):
    r = features_run["r"]

    def servers(answers: dict, call: str) -> set[str]:
        return set(answers[f"call {call}"])

    a, b = servers(r["sip"], "a"), servers(r["sip"], "b")
    assert len(a) == 1 and len(b) == 1 and a != b and a | b == {"rs1", "rs2"}, r["sip"]
    # negative control: persistence by client address puts both calls on one real server
    c, d = servers(r["sip_off"], "c"), servers(r["sip_off"], "d")
    assert len(c | d) == 1 and not any(x.startswith("ERR") for x in c | d), r["sip_off"]
    heal = r["sip_heal"]["lb"]
    assert heal["rc"] == 0 and "ipvsadm -E -u 192.0.2.120:5060 -s rr -p 60 --pe sip" in heal["output"], heal
    e, f = servers(r["sip_healed"], "e"), servers(r["sip_healed"], "f")
    assert len(e) == 1 and len(f) == 1 and e != f, r["sip_healed"]


def test_timeouts_are_set_and_put_back(features_run):
    r = features_run["r"]
    assert r["timeouts"] == "Timeout (tcp tcpfin udp): 600 120 60", r["timeouts"]  # tcpfin: the kernel's
    assert r["timeouts_by_hand"] == "Timeout (tcp tcpfin udp): 900 120 300"
    heal = r["timeouts_heal"]["lb"]
    assert heal["rc"] == 0 and "+ ipvsadm --set 600 120 60" in heal["output"], heal
    assert r["timeouts_healed"] == r["timeouts"]


def test_conn_tab_bits_sizes_the_table_when_setup_loads_ip_vs(features_run):
    r = features_run["r"]
    assert r["ipvs_header"] == "IP Virtual Server version 1.2.1 (size=16384)", r["ipvs_header"]  # 2^14
    assert r["knobs"] == {"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.conn_reuse_mode": "2", "net.ipv4.conf.eth0.proxy_arp": "0"}


def test_a_real_server_at_its_upper_threshold_gets_no_new_connections(features_run):
    r = features_run["r"]
    key = "tcp 192.0.2.122:80"
    assert "  -> 192.0.2.11:80                1          0" in r["th_listing"], r["th_listing"]
    for got in (r["th_first"][key], r["th_healed"][key]):
        assert len(got) == 6 and got.count("rs1") <= 1 and got.count("rs2") >= 5, got
    off = r["th_off"][key]
    assert off.count("rs1") >= 2 and off.count("rs2") >= 2, off  # negative control: rr alternates
    heal = r["th_heal"]["lb"]
    assert heal["rc"] == 0 and "+ ipvsadm -e -t 192.0.2.122:80 -r 192.0.2.11:80 -g -w 1 -x 1 -y 0" in heal["output"], heal


def test_gue_and_gre_tunnels_reach_each_real_server(features_run):
    r = features_run["r"]
    assert sorted(r["answers"]["tcp 192.0.2.123:80"]) == ["rs1", "rs1", "rs2", "rs2"], r["answers"]  # gue
    assert sorted(r["answers"]["tcp 192.0.2.123:81"]) == ["rs1", "rs1", "rs2", "rs2"], r["answers"]  # gre
    assert sorted(r["answers"]["tcp 192.0.2.123:82"]) == ["rs1", "rs1", "rs2", "rs2"], r["answers"]  # gue, csum
    assert sorted(r["answers"]["tcp 192.0.2.123:83"]) == ["rs1", "rs1", "rs2", "rs2"], r["answers"]  # gue, remcsum
    assert all(text.splitlines()[:1] == ["port 6080 gue"] for text in r["fou"].values()), r["fou"]
    assert all(n > 0 for n in r["gre0_rx"].values()), r["gre0_rx"]


def test_negative_control_a_closed_gue_port_fails_its_turns_until_setup_opens_it(features_run):
    r = features_run["r"]
    key = "tcp 192.0.2.123:80"
    got = r["gue_no_port"][key]
    assert "rs1" not in got and got.count("rs2") == 2 and sum(a.startswith("ERR") for a in got) == 2, got
    heal = r["gue_heal"]["rs1"]
    assert heal["rc"] == 0 and "+ ip fou add port 6080 gue" in heal["output"], heal
    assert sorted(r["gue_healed"][key]) == ["rs1", "rs1", "rs2", "rs2"], r["gue_healed"]


def test_a_firewall_mark_service_keeps_a_client_on_one_real_server_across_its_ports(features_run):
    r = features_run["r"]
    fw = r["fwmark"]
    assert "tcp dport { 80, 8080 } meta mark set 0x00000007" in fw["nft"], fw["nft"]
    got = fw["answers"]

    def stage(name: str) -> list[str]:
        return [a for key, answers in sorted(got.items()) if key.startswith(name + " ") for a in answers]

    first = stage("first")
    assert len(first) == 6 and len(set(first)) == 1 and first[0] in ("rs1", "rs2"), got  # both ports, one server
    # negative control: the same requests without persistence go to both real servers
    assert sorted(set(stage("off"))) == ["rs1", "rs2"], got
    assert "+ ipvsadm -E -f 7 -s rr -p 300" in fw["heal_persistence"]["lb"]["output"], fw["heal_persistence"]
    # negative control: without the marks (the table deleted by hand), nothing takes the packets
    assert all(a.startswith("ERR") for a in stage("no-table")), got
    heal = fw["heal_table"]["lb"]
    assert heal["rc"] == 0 and any("+ nft -f " in x and x.endswith("/etc/lvsgen/lvsgen.nft") for x in heal["output"].splitlines()), heal
    healed = stage("healed")
    assert len(healed) == 6 and len(set(healed)) == 1 and not healed[0].startswith("ERR"), got
    # the FWM lines of 'ipvsadm -L -n --thresholds': rs2's threshold is there, and every later
    # run found nothing to do (test_the_saved_table_is_the_rules_file_and_a_second_run_changes_nothing)
    assert "FWM  7 rr persistent 300" in fw["thresholds"], fw["thresholds"]
    assert re.search(r"^  -> 192\.0\.2\.12:0 +50 +0 ", fw["thresholds"], re.M), fw["thresholds"]
