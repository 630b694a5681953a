"""lvsgen's own artifacts, applied in a real kernel (pytest -m vm).

For each example, one VM boot runs cluster/driver.py in three phases:
- setup:    every host's generated setup.sh, run as it is in the host's own namespace, then
            traffic, ARP, IPVS stats, the saved table, and a second run of every setup.sh;
- noarp:    the same cluster with the real servers' ARP settings cut out (negative control);
- networkd: a reboot of networkd hosts set up like Ubuntu's cloud images (netplan's
            /run/systemd/network/10-netplan-eth0.network gives each NIC its address and
            gateway; a host with network_file has its own file in /etc instead): the generated
            etc/ installed, then systemd-modules-load, systemd-sysctl, the boot unit and
            systemd-networkd in unit order; each host keeps its default route, traffic and ARP
            again, then setup.sh, which must find nothing to change;
- ifupdown: a reboot of hosts without networkd: only the boot units' commands, around the
            host's own network coming up; traffic and ARP again, then setup.sh.
The driver only records facts. The expectations come from the raw cluster file, read by
tests/vm/expect.py, which shares no code with lvsgen: a generator that misreads the file
cannot make its own expectations agree with it. The mutants phase proves the checks can fail:
each director's table is changed the way a generator bug would change it (weights flattened,
a real server left out), traffic is sent again, and the answer check must report it.
"""

from __future__ import annotations

import ipaddress
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

from driven import cluster_files, run_driver, second_run_problems  # noqa: E402
from expect import Cluster, check_answers, expected_answers, table_problems  # noqa: E402

pytestmark = pytest.mark.vm

# The shipped examples, or LVSGEN_VM_CLUSTER_CLUSTER's files (tests/vm/README.md).
EXAMPLES = {p.stem: p for p in cluster_files("cluster", [])} or {"seed-dr": ROOT / "examples/seed-dr.json", "shop": ROOT / "examples/cluster.json"}


def topology(cluster: Cluster, out: str) -> dict:
    networks: list[str] = []
    hosts = []
    used = {ipaddress.ip_interface(h["address"]).ip for h in cluster.hosts.values()} | {ipaddress.ip_address(v["address"]) for v in cluster.vips}

    def free(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """An address of NET no host or VIP has, from the top (the client's, a gateway's)."""
        ip = next(ip for ip in reversed(list(net.hosts())) if ip not in used)
        used.add(ip)
        return ip

    gateways: dict[str, str] = {}
    for name, host in cluster.hosts.items():
        net = str(ipaddress.ip_interface(host["address"]).network)
        if net not in networks:
            networks.append(net)
        serve = sorted({f"{svc['protocol']}:{svc['vip']}:{svc['port']}" for svc in cluster.services if name in svc["weights"]})
        if net not in gateways:  # a router address on each network: nothing answers there
            gateways[net] = str(free(ipaddress.ip_network(net)))
        own_units = {}
        if host.get("network_file"):
            # The file the host already has (network_file): it configures the host's address
            # and its default route.
            own_units[host["network_file"]] = (f"[Match]\nName={host['interface']}\n\n[Network]\nAddress={host['address']}\n"
                                               f"Gateway={gateways[net]}\n")
        hosts.append({
            "name": name, "hostname": cluster.hostname(name), "role": host["role"],
            "interface": host["interface"], "network": net, "serve": serve,
            "own_address": str(ipaddress.ip_interface(host["address"])), "gateway": gateways[net],
            "addresses": [list(a) for a in cluster.addresses(name)],
            "own_units": own_units,
        })
    director = cluster.hosts[cluster.directors()[0]]
    director_net = ipaddress.ip_interface(director["address"]).network
    client_ip = free(director_net)
    plan, big = [], []
    for svc in cluster.services:
        n, _, _ = expected_answers(svc)
        plan.append({"key": svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": n})
    for vip in cluster.vips:
        if not any(b["director"] == vip["director"] for b in big):
            tcp = next((s for s in cluster.services if s["vip"] == vip["address"] and s["protocol"] == "tcp" and not s["persistent"]), None)
            if tcp is not None:
                big.append({"director": vip["director"], "vip": vip["address"], "port": tcp["port"]})
    return {
        "hosts": hosts,
        "networks": networks,
        "client": {"name": "client", "interface": "eth0", "address": f"{client_ip}/{director_net.prefixlen}", "network": str(director_net)},
        "vips": [{"address": v["address"], "director": v["director"]} for v in cluster.vips],
        "plan": plan,
        "big": big,
        "trees": {"main": out, "noarp": f"{out}-noarp"},
        "mutants": {name: {"tree": f"{out}-{name}", "hosts": cluster.directors()} for name in MUTANTS},
        "phases": ["setup", "noarp", "networkd", "ifupdown"],
    }


# --- mutants: the director's table as a generator bug would write it --------------------------------
def _flatten_weights(rules: str) -> str:
    """Every weight above 1 becomes 1 (the model bug that once passed every VM test); in a
    cluster without such weights, the first real server goes to weight 0 instead."""
    out = re.sub(r" -w ([2-9]|[1-9][0-9]+)$", " -w 1", rules, flags=re.M)
    if out == rules:
        out = re.sub(r"^(-a .* -w )1$", r"\g<1>0", rules, count=1, flags=re.M)
    return out


def _drop_real_server(rules: str) -> str:
    """The first real server line is left out."""
    return re.sub(r"^-a .*\n", "", rules, count=1, flags=re.M)


MUTANTS = {"weights-flattened": _flatten_weights, "real-server-dropped": _drop_real_server}


def make_mutant(src: Path, dest: Path, directors: list[str], mutate) -> None:
    shutil.copytree(src, dest)
    for director in directors:
        rules = dest / director / "etc/lvsgen/ipvsadm.rules"
        text = rules.read_text()
        changed = mutate(text)
        assert changed != text, f"mutant changed nothing in {rules}"
        rules.write_text(changed)


def strip_arp(tree: Path) -> None:
    """The negative control: real servers without their ARP settings, in script and drop-in."""
    for script in tree.glob("*/setup.sh"):
        text = script.read_text()
        if "LVS_RULES=''" not in text:
            continue  # a director
        script.write_text("".join(line for line in text.splitlines(keepends=True) if "arp_" not in line))
        conf = script.parent / "etc/sysctl.d/99-zz-lvsgen.conf"
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
    cluster = Cluster(EXAMPLES[name])
    for mutant, mutate in MUTANTS.items():
        make_mutant(work / "out", work / f"out-{mutant}", cluster.directors(), mutate)
    run, results = run_driver(work, topology(cluster, "out"), timeout=1500)
    return {"name": name, "cluster": cluster, "results": results, "run": run, "work": work}


def phase(cluster_run, name: str) -> dict:
    r = cluster_run["results"].get(name)
    assert r is not None, f"phase {name} did not run\n" + cluster_run["run"].diagnostics()
    assert "error" not in r, r["error"] + "\n" + cluster_run["run"].diagnostics()
    return r


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
    assert set(first) == set(cluster_run["cluster"].hosts)


def test_every_real_server_answers_in_the_scheduled_split(cluster_run):
    answers = phase(cluster_run, "setup")["answers"]
    assert answers, "no traffic was sent"
    assert check_answers(cluster_run["cluster"], answers) == []


def test_arp_for_each_vip_is_answered_by_the_director_only(cluster_run):
    arp = phase(cluster_run, "setup")["arp"]
    assert set(arp) == {v["address"] for v in cluster_run["cluster"].vips}
    assert check_arp(arp) == []


def test_dr_replies_bypass_the_director(cluster_run):
    r = phase(cluster_run, "setup")
    for director, seen in r["bypass"].items():
        assert seen["bodies"] == [str(2 * 1024 * 1024)] * 2, seen
        # The client received 4 MiB; the director saw only the requests and ACKs.
        assert seen["client_rx"] > 4_000_000, seen
        assert seen["director_rx"] < seen["client_rx"] / 20, seen
    for svc in cluster_run["cluster"].services:  # all DR (expect.py refuses anything else)
        conns, inpkts, outpkts = r["stats"][svc["director"]][svc["ipvs_key"]]
        assert conns > 0 and inpkts > 0, (svc, r["stats"][svc["director"]])
        assert outpkts == 0, f"{svc['ipvs_key']}: OutPkts {outpkts}: replies went through the director"


def test_saved_table_equals_the_rules_file(cluster_run):
    """The table as the kernel saves it, its thresholds and its timeouts, against what the raw
    cluster file says (tests/vm/expect.py); and lvsgen's own rules file against the same table."""
    r = phase(cluster_run, "setup")
    directors = cluster_run["cluster"].directors()
    assert sorted(r["saved"]) == sorted(directors) and sorted(r["tables"]) == sorted(directors)
    assert table_problems(cluster_run["cluster"], r["tables"]) == []
    for director in directors:
        rules = (cluster_run["work"] / "out" / director / "etc/lvsgen/ipvsadm.rules").read_text()
        # The order of ipvsadm-save depends on the kernel's hash for some address sets (see
        # lvsgen.order), and the converge adds entries in its own order: compare as lines.
        assert sorted(r["saved"][director].splitlines()) == sorted(rules.splitlines()), f"{director}: ipvsadm-save -n differs from etc/lvsgen/ipvsadm.rules"


def test_second_run_of_every_setup_sh_changes_nothing(cluster_run):
    assert second_run_problems(cluster_run["cluster"], phase(cluster_run, "setup")) == []


def test_idempotence_snapshot_covers_the_state(cluster_run):
    """The snapshot compared above really holds the VIPs, sysctls and table it must compare."""
    r = phase(cluster_run, "setup")
    cluster = cluster_run["cluster"]
    for name, host in cluster.hosts.items():
        snap = r["before"][name]
        for cidr, _ in cluster.addresses(name):
            assert f" {cidr} " in snap or f" {cidr}\n" in snap, (name, cidr)
        if host["role"] == "director":
            assert (cluster_run["work"] / "out" / name / "etc/lvsgen/ipvsadm.rules").read_text().splitlines()[0] in snap
            assert "/var/lib/lvsgen/record" in snap and "/etc/systemd/system/multi-user.target.wants/lvsgen.service" in snap
        else:
            assert re.search(r"^net\.ipv4\.conf\.all\.arp_ignore = 1$", snap, re.M), name


def _modules_load_d(cluster_run) -> set[str]:
    """Every module named in the hosts' generated modules-load.d files."""
    out = set()
    for conf in (cluster_run["work"] / "out").glob("*/etc/modules-load.d/*.conf"):
        out |= {line.strip() for line in conf.read_text().splitlines() if line.strip() and not line.startswith("#")}
    return out


@pytest.mark.parametrize("path", ["setup", "networkd"])
def test_each_path_starts_on_a_bare_kernel_and_loads_its_modules_itself(cluster_run, path):
    """No IPVS, dummy or ipip module is loaded before either path runs, and the kernel's
    autoloader is off: setup.sh's modprobe, and at boot systemd-modules-load with lvsgen's
    modules-load.d, must load every module the cluster needs."""
    r = phase(cluster_run, path)
    assert r["bare"] == [], f"still loaded before the {path} path: {r['bare']}"
    wanted = _modules_load_d(cluster_run)
    assert "ip_vs" in wanted, wanted
    assert wanted <= set(r["modules"]), f"not loaded by the {path} path: {sorted(wanted - set(r['modules']))}"


def test_nothing_relied_on_the_kernels_module_autoloader(cluster_run):
    # systemd-networkd asks for the wireless netlink family (nl80211) at start, and goes on
    # without it: not lvsgen's. Any other request was something the artifacts failed to load.
    refused = [line for line in cluster_run["results"]["autoload_refused"] if not line.endswith("-family-nl80211")]
    assert refused == []


# --- phase: negative control -----------------------------------------------------------------------
def test_negative_control_without_arp_settings_is_detected(cluster_run):
    r = phase(cluster_run, "noarp")
    assert all(x["rc"] == 0 for x in r["first"].values()), r["first"]
    problems = check_arp(r["arp"])
    assert problems, "with the real servers' ARP settings cut out, the ARP check still passed: it cannot fail"
    assert any(len(seen["macs"]) > 1 for seen in r["arp"].values())


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mutant_table_fails_the_answer_check(cluster_run, mutant):
    """A generator bug's table, converged onto the running cluster: the check that passed on
    the real build must now report a problem (else it could not catch that bug)."""
    r = phase(cluster_run, "setup")["mutants"][mutant]
    assert all(x["rc"] == 0 for x in r["apply"].values()), r["apply"]
    problems = check_answers(cluster_run["cluster"], r["answers"])
    print(f"{cluster_run['name']}: {mutant}: {problems}")
    assert problems, f"{mutant}: the answer check passed on a wrong table: it cannot catch this bug"
    assert all(x["rc"] == 0 for x in r["restore"].values()), r["restore"]


# --- phase: systemd-networkd -------------------------------------------------------------------------
def test_networkd_configures_every_address(cluster_run):
    r = phase(cluster_run, "networkd")
    assert r["missing"] == [], "\n".join(r["missing"]) + "\n" + json.dumps(r["logs"], indent=1)[-6000:]


def test_boot_unit_loads_the_table_before_the_network(cluster_run):
    """The generated unit's ExecStart, run after systemd-sysctl and before systemd-networkd
    as its ordering says, loads every director's table: no step is done by hand."""
    boot = phase(cluster_run, "networkd")["boot_unit"]
    assert sorted(boot) == sorted(cluster_run["cluster"].hosts), "every host has the boot unit"
    for host, result in boot.items():
        assert result["rc"] == "0", f"{host}: {result}"
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
    """Both paths reach the same state: after the boot path, setup.sh finds nothing to do, and
    leaves every host's state as it was."""
    r = phase(cluster_run, "networkd")
    assert second_run_problems(cluster_run["cluster"], {"second": r["setup"], "before": r["setup_before"], "after": r["setup_after"]}, after_boot=True) == []


def test_networkd_keeps_each_hosts_own_file_in_charge(cluster_run):
    """lvsgen's networkd files must not shadow the host's own (netplan's, or the one the
    cluster file names): each host still has the default route only its own file gives."""
    r = phase(cluster_run, "networkd")
    for host in json.loads((cluster_run["work"] / "topology.json").read_text())["hosts"]:
        assert r["routes"][host["name"]].startswith(f"default via {host['gateway']} dev {host['interface']}"), (host["name"], r["routes"])
    # and lvsgen wrote no .network file for any NIC (no own_interface in these examples)
    nic_units = [p for p in (cluster_run["work"] / "out").glob("*/etc/systemd/network/*.network") if "lvs0" not in p.name and "tunl0" not in p.name]
    assert nic_units == []


def test_lvsgens_sysctl_drop_in_wins_over_etc_sysctl_conf(cluster_run):
    """Each host's /etc/sysctl.conf (sysctl.d/99-sysctl.conf) says the opposite of lvsgen;
    right after systemd-sysctl, before the boot unit could fix anything, lvsgen's values hold."""
    after = phase(cluster_run, "networkd")["after_sysctl"]
    for name, host in cluster_run["cluster"].hosts.items():
        if host["role"] == "director":  # arp_ignore 0 (it answers ARP for VIPs on lvs0); no arp_announce
            assert after[name][0] == "0", (name, after[name])
        else:  # arp_ignore 1, arp_announce 2
            assert after[name] == ["1", "2"], (name, after[name])


# --- phase: a reboot without networkd ------------------------------------------------------------
def test_ifupdown_boot_units_succeed_and_the_early_one_needs_no_network(cluster_run):
    r = phase(cluster_run, "ifupdown")
    assert r["bare"] == []
    cluster = cluster_run["cluster"]
    for name, result in r["boot_unit"].items():
        assert result is not None and result["rc"] == "0", f"{name}: {result}"
        # Before the network: every VIP is in place, on lvsgen's own devices; the NIC has none.
        have = r["before_network"][name]
        for cidr, dev in cluster.addresses(name)[1:]:
            assert re.search(r"^\d+: %s\s+inet6? %s " % (re.escape(dev), re.escape(cidr)), have, re.M), (name, cidr, dev, have)
        assert cluster.hosts[name]["address"] not in have, f"{name}: lvsgen configured the host's own address"
    assert all(x is None or x["rc"] == "0" for x in r["network_unit"].values()), r["network_unit"]
    assert r["missing"] == []


def test_ifupdown_cluster_serves_and_hides_arp(cluster_run):
    r = phase(cluster_run, "ifupdown")
    assert check_answers(cluster_run["cluster"], r["answers"]) == []
    assert check_arp(r["arp"]) == []
    wanted = _modules_load_d(cluster_run)
    assert wanted <= set(r["modules"]), sorted(wanted - set(r["modules"]))


def test_setup_sh_after_an_ifupdown_boot_changes_nothing(cluster_run):
    r = phase(cluster_run, "ifupdown")
    assert second_run_problems(cluster_run["cluster"], {"second": r["setup"], "before": r["setup_before"], "after": r["setup_after"]}, after_boot=True) == []
