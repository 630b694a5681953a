"""Changes to a live cluster, in a real kernel (pytest -m vm): one VM boot.

A steady stream of short requests goes through a VIP while one build after another is
applied: add a real server, change a weight, remove a real server (drained), add a service,
remove a VIP with its services, move the stream's port into a firewall-mark service and back
(the marks change in two steps around the table), re-apply with no change. Then, on the same cluster: drift is
healed, a table that is not lvsgen's keeps a foreign service, a reboot of the director comes
back from the generated units alone, and a failing step stops the run and names itself. The
same sequence with plain ipvsadm-restore is the baseline.

Every expectation here comes from the cluster documents below, not from lvsgen's model.
"""

from __future__ import annotations

import copy
import difflib
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

pytestmark = pytest.mark.vm

VIP_A, VIP_B, VIP_C = "192.0.2.100", "192.0.2.101", "192.0.2.102"
RS = {"rs1": "192.0.2.11", "rs2": "192.0.2.12", "rs3": "192.0.2.13", "rs4": "192.0.2.14"}
FILLER_PORTS = range(1000, 1300)  # 300 services on VIP C: a reload of the table takes a while
FOREIGN = "192.0.2.200:80"
BIG = 2 * 1024 * 1024


def svc(port, scheduler, servers):
    return {"protocol": "tcp", "port": port, "scheduler": scheduler, "forwarding": "dr",
            "real_servers": [{"host": h, "weight": w} for h, w in servers]}


MARK, MARKED_PORTS = 1, [80, 8090]


def to_mark(s: dict) -> dict:
    out = {k: v for k, v in s.items() if k != "port"}
    return {**out, "fwmark": MARK, "ports": MARKED_PORTS}


def from_mark(s: dict) -> list[dict]:
    """The port's own service, first, and the mark service with the other ports."""
    out = {k: v for k, v in s.items() if k not in ("fwmark", "ports")}
    return [{**out, "port": MARKED_PORTS[0]}, {**s, "ports": MARKED_PORTS[1:]}]


BASE = {
    "cluster": "converge",
    "hosts": {
        "lb": {"role": "director", "interface": "eth0", "address": "192.0.2.2/24", "drain_timeout": 20},
        **{name: {"role": "real-server", "interface": "eth0", "address": f"{ip}/24"} for name, ip in RS.items()},
    },
    "vips": {
        "a": {"address": VIP_A, "director": "lb", "services": [svc(80, "wrr", [("rs1", 1), ("rs2", 1)])]},
        "b": {"address": VIP_B, "director": "lb", "services": [svc(80, "rr", [("rs2", 1), ("rs4", 1)])]},
        "c": {"address": VIP_C, "director": "lb", "services": [svc(p, "rr", [("rs1", 1)]) for p in FILLER_PORTS]},
    },
}


def steps() -> list[tuple[str, dict, dict]]:
    """(name, cluster document, options) in order; each document builds on the one before."""
    out = [("initial", copy.deepcopy(BASE), {})]

    def step(name, change, **options):
        doc = copy.deepcopy(out[-1][1])
        change(doc)
        out.append((name, doc, options))

    step("add a real server", lambda d: d["vips"]["a"]["services"][0]["real_servers"].append({"host": "rs3", "weight": 1}))
    # The director goes first, while the download runs: its converge is what must not cut it.
    step("change a weight", lambda d: d["vips"]["a"]["services"][0]["real_servers"][0].update(weight=3),
         slow_download=True, director_first=True)
    step("remove a real server (drained)", lambda d: d["vips"]["a"]["services"][0]["real_servers"].pop(1), director_first=True)
    step("add a service", lambda d: d["vips"]["a"]["services"].append(svc(8080, "rr", [("rs1", 1), ("rs3", 1)])))
    step("remove a VIP with its services", lambda d: d["vips"].pop("b"), director_first=True, facts=True)
    # The stream's port goes into a firewall-mark service and back out, while the mark service
    # stays for another port: the marks change with the table, in two steps, so that the port
    # always finds a service. Then the mark service goes (and lvsgen's nftables table with it).
    def into_mark(d):
        services = d["vips"]["a"]["services"]
        services[0] = to_mark(services[0])

    def out_of_mark(d):
        services = d["vips"]["a"]["services"]
        services[0:1] = from_mark(services[0])

    step("move the port into a firewall-mark service", into_mark, director_first=True)
    step("move the port back to a service of its own", out_of_mark, director_first=True)
    step("remove the firewall-mark service", lambda d: d["vips"]["a"]["services"].pop(1), director_first=True)
    step("re-apply with no change", lambda d: None)
    return out


def topology() -> dict:
    serve = {"rs1": [f"tcp:{VIP_A}:80", f"tcp:{VIP_A}:8080"], "rs2": [f"tcp:{VIP_A}:80", f"tcp:{VIP_B}:80"],
             "rs3": [f"tcp:{VIP_A}:80", f"tcp:{VIP_A}:8080"], "rs4": [f"tcp:{VIP_B}:80"]}
    own = {"network": "192.0.2.0/24", "gateway": "192.0.2.254", "addresses": [], "own_units": {}}
    hosts = [{"name": "lb", "hostname": "lb", "role": "director", "interface": "eth0", "serve": [], "own_address": "192.0.2.2/24", **own}]
    hosts += [{"name": n, "hostname": n, "role": "real-server", "interface": "eth0", "serve": serve[n], "own_address": f"{ip}/24", **own}
              for n, ip in RS.items()]
    return {"hosts": hosts, "networks": ["192.0.2.0/24"],
            "client": {"name": "client", "interface": "eth0", "address": "192.0.2.250/24", "network": "192.0.2.0/24"},
            "vips": [], "plan": [], "big": [], "trees": {}, "phases": []}


def rules_lines(doc: dict) -> set[str]:
    """The table a document describes, as lines, computed here from the document alone."""
    lines = set()
    for vip in doc["vips"].values():
        for s in vip["services"]:
            name = f"-f {s['fwmark']}" if "fwmark" in s else f"-t {vip['address']}:{s['port']}"
            lines.add(f"-A {name} -s {s['scheduler']}")
            for rs in s["real_servers"]:
                lines.add(f"-a {name} -r {RS[rs['host']]}:{s.get('port', 0)} -g -w {rs['weight']}")
    return lines


def table(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def converge(tmp_path_factory):
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("vm-converge")
    sequence = steps()
    plan = []
    for index, (name, doc, options) in enumerate(sequence):
        tree = f"s{index}"
        # The same file name every time, as in a real repository: the headers do not change.
        (work / "in" / tree).mkdir(parents=True)
        (work / "in" / tree / "cluster.json").write_text(json.dumps(doc, indent=1))
        build = lvsgen("build", str(work / "in" / tree / "cluster.json"), "-o", str(work / tree))
        assert build.returncode == 0, build.stderr
        plan.append({"name": name, "tree": tree, **options})
    shared = copy.deepcopy(sequence[-1][1])
    shared["hosts"]["lb"]["owns_ipvs_table"] = False
    (work / "in" / "shared").mkdir()
    (work / "in" / "shared" / "cluster.json").write_text(json.dumps(shared, indent=1))
    assert lvsgen("build", str(work / "in" / "shared" / "cluster.json"), "-o", str(work / "shared")).returncode == 0
    (work / "topology.json").write_text(json.dumps(topology(), indent=1))
    (work / "steps.json").write_text(json.dumps({
        "director": "lb", "steps": plan, "stream_url": f"http://{VIP_A}/", "slow_url": f"http://{VIP_A}/big",
        "drift_service": f"{VIP_A}:80", "foreign_service": FOREIGN, "director_vips": [VIP_A, VIP_C],
        "not_owned_tree": "shared", "bad_rule": f"-A -t {VIP_A}:81 -s nosuch",
    }, indent=1))
    shutil.copy2(HERE / "cluster" / "driver.py", work / "driver.py")
    shutil.copy2(HERE / "cluster" / "peer.py", work / "peer.py")
    for f in ("converge.py", "load.py", "run.sh"):
        shutil.copy2(HERE / "converge" / f, work / f)
    run = vm.boot(work, timeout=2400)
    print(run.summary())
    results = work / "results.json"
    assert results.exists(), run.diagnostics()
    (work / "console.txt").write_text(run.output)
    return {"results": json.loads(results.read_text()), "run": run, "steps": sequence, "work": work, "plan": plan}


def mode(converge, name: str) -> dict:
    r = converge["results"].get(name)
    assert r is not None and "error" not in r, (r or {}).get("error", "missing") + "\n" + converge["run"].diagnostics()
    return r


def failures(stream: list[str]) -> list[str]:
    return [line for line in stream if " ERR " in line]


def _ok(result: dict) -> str:
    return f"rc={result['rc']}\n{result['stdout'][-3000:]}\n{result['stderr'][-3000:]}"


# --- changes under load ---------------------------------------------------------------------------
def test_every_change_applies_and_the_table_follows_the_file(converge):
    r = mode(converge, "lvsgen")
    for host, result in r["first"].items():
        assert result["rc"] == 0, (host, _ok(result))
    for (name, doc, _), step in zip(converge["steps"][1:], r["steps"]):
        assert step["name"] == name
        for host, result in step["runs"].items():
            assert result["rc"] == 0, (name, host, _ok(result))
        assert table(step["saved"]) == rules_lines(doc), name


def test_no_request_fails_while_the_cluster_changes(converge):
    stream = mode(converge, "lvsgen")["stream"]
    assert len(stream) >= 100, f"only {len(stream)} requests were sent"
    assert failures(stream) == [], f"{len(failures(stream))} of {len(stream)} requests failed"
    answered = {line.split()[2] for line in stream}
    assert {"rs1", "rs2", "rs3"} <= answered  # the stream saw the real servers come and go


def test_a_table_equal_to_its_image_is_compared_by_lookups_alone(converge):
    """In a real kernel, /proc prints each line of a table lvsgen put right exactly as the image
    says: the --dry-run after each step (on the table that step put right) matches every line
    by lookup, converts none, and exits 0."""
    r = mode(converge, "lvsgen")
    checked = 0
    for (name, _, _), step, p in zip(converge["steps"][1:], r["steps"], converge["plan"][1:]):
        dry = step["dry"]
        assert dry["rc"] == 0, (name, dry["stdout"])
        # A firewall-mark service: no image, the table is read with ipvsadm -S -n.
        if not (converge["work"] / p["tree"] / "lb" / "ipvsadm.proc").exists():
            continue
        assert dry["image"] is not None and len(set(dry["image"].split())) == 1, (name, dry)
        checked += 1
    assert checked >= 5


def test_the_verify_after_a_change_reads_only_what_it_touched(converge):
    """After ipvsadm -R, the verify reads back the touched services alone: of the rules file,
    only their lines (picked by name), and not the image, which is of the whole table."""
    r = mode(converge, "lvsgen")
    checked = 0
    for (name, _, _), step, p in zip(converge["steps"][1:], r["steps"], converge["plan"][1:]):
        if "no changes: already in the described state" in step["runs"]["lb"]["stdout"]:
            continue
        if "+ ipvsadm" not in step["runs"]["lb"]["stdout"]:
            continue  # the director's table did not change in this step
        rules = (converge["work"] / p["tree"] / "lb" / "etc" / "lvsgen" / "ipvsadm.rules").read_text().splitlines()
        read = step["image"]["verify_read"]
        assert read is not None and read < len(rules), (name, read, len(rules))
        assert step["image"]["verify"] == "", (name, step["image"])
        checked += 1
    assert checked >= 3


def test_the_last_run_changes_nothing(converge):
    """It says so, and every host's state (tests/vm/cluster/driver.py's snapshot) is byte for
    byte what it was before it."""
    step = mode(converge, "lvsgen")["steps"][-1]
    assert sorted(step["before"]) == sorted(step["runs"]) and step["runs"], step["runs"]
    for host, result in step["runs"].items():
        assert "no changes: already in the described state" in result["stdout"], (host, _ok(result))
        assert "## ipvs" in step["before"][host] and "## addresses" in step["before"][host], host
        diff = "".join(difflib.unified_diff(step["before"][host].splitlines(True), step["after"][host].splitlines(True), "before", "after", n=1))
        assert not diff, f"{host}: the last run changed the host's state:\n{diff}"


def test_a_long_download_survives_a_converge_that_keeps_its_real_server(converge):
    assert mode(converge, "lvsgen")["slow"] == str(BIG)


def test_baseline_ipvsadm_restore_cuts_the_download(converge):
    """Negative control: the same sequence with a flush-and-reload (ipvsadm-restore) on the
    director. Its request failures are reported; the long download does not survive it."""
    r = mode(converge, "restore")
    stream = r["stream"]
    print(f"baseline: {len(failures(stream))} of {len(stream)} requests failed; download: {r['slow']}")
    assert r["slow"] != str(BIG), "the download survived a flush: the check above could not fail"


def test_removed_vip_is_gone_and_nothing_else_changed(converge):
    r = mode(converge, "lvsgen")
    before, after = r["facts_before"], r["facts_after"]
    work = converge["work"]
    old, new = work / "s4", work / "s5"
    docs = {name: doc for name, doc, _ in converge["steps"]}
    s4, s5 = docs["add a service"], docs["remove a VIP with its services"]

    def served(doc, host):  # the VIPs a real server holds under a document
        return {v["address"] for v in doc["vips"].values() for s in v["services"] for rs in s["real_servers"] if rs["host"] == host}

    for host in before:
        files_old = {f"file /{p.relative_to(old / host).as_posix()}" for p in (old / host / "etc").rglob("*") if p.is_file()}
        files_new = {f"file /{p.relative_to(new / host).as_posix()}" for p in (new / host / "etc").rglob("*") if p.is_file()}
        if host == "lb":
            gone, came = {f"lvs0 {VIP_B}/32"}, set()  # a director's IPv4 VIPs are on lvsgen's dummy
        else:
            gone, came = {f"lvs0 {vip}/32" for vip in served(s4, host) - served(s5, host)}, set()
            if served(s4, host) and not served(s5, host):
                # Nothing left to hide: the dummy device goes (with its link-local address),
                # and the ARP sysctls go back to what the host had.
                gone |= {"link lvs0", "sysctl arp_ignore 1"} | {line for line in before[host] if line.startswith("lvs0 fe80:")}
                came = {"sysctl arp_ignore 0"}
        gone |= files_old - files_new
        assert set(before[host]) - set(after[host]) == gone, host
        assert set(after[host]) - set(before[host]) == came, host
    assert any(line.startswith("file /etc/sysctl.d/") for line in set(before["rs4"]) - set(after["rs4"]))
    assert "link lvs0" in set(before["rs4"]) - set(after["rs4"])


# --- drift -------------------------------------------------------------------------------------------
def test_drift_is_reported_by_dry_run_and_healed(converge):
    r = mode(converge, "lvsgen")
    assert r["drift_dry_run"]["rc"] == 2, _ok(r["drift_dry_run"])
    assert r["drift_dry_run_unchanged"], "--dry-run changed the table"
    assert f"would run: ipvsadm -A -t {VIP_A}:80" in r["drift_dry_run"]["stdout"]
    assert f"would run: ipvsadm -D -t {FOREIGN}" in r["drift_dry_run"]["stdout"]
    assert r["drift_heal"]["rc"] == 0, _ok(r["drift_heal"])
    assert table(r["drift_saved"]) == rules_lines(converge["steps"][-1][1])
    assert "no changes" in r["drift_second"]["stdout"], _ok(r["drift_second"])
    assert r["drift_second_dry_run"]["rc"] == 0, _ok(r["drift_second_dry_run"])


def test_a_table_that_is_not_lvsgens_keeps_foreign_services(converge):
    r = mode(converge, "lvsgen")
    assert r["shared_first"]["rc"] == 0 and r["shared_run"]["rc"] == 0, _ok(r["shared_run"])
    assert f"-A -t {FOREIGN} -s rr" in table(r["shared_saved"])
    assert table(r["shared_saved"]) - {f"-A -t {FOREIGN} -s rr"} == rules_lines(converge["steps"][-1][1])
    assert r["shared_dry_run"]["rc"] == 0, _ok(r["shared_dry_run"])
    assert r["back_to_owned"]["rc"] == 0, _ok(r["back_to_owned"])


# --- reboot ------------------------------------------------------------------------------------------
def test_reboot_comes_back_from_the_generated_units_alone(converge):
    r = mode(converge, "lvsgen")
    assert r["reboot_empty"].strip() == ""
    assert r["reboot_wants"], "setup.sh did not enable the boot unit"
    assert r["reboot_boot_unit"]["rc"] == 0, _ok(r["reboot_boot_unit"])
    # The table is complete before networkd brings up a single VIP.
    assert table(r["reboot_saved_before_network"]) == rules_lines(converge["steps"][-1][1])
    for vip in (VIP_A, VIP_C):
        assert f" {vip}/32 " in r["reboot_addresses"], r["reboot_addresses"]
    assert len(r["reboot_answers"]) == 6 and not [a for a in r["reboot_answers"] if a.startswith("ERR")], r["reboot_answers"]
    assert "no changes" in r["reboot_setup_after"]["stdout"], _ok(r["reboot_setup_after"])


# --- failure -----------------------------------------------------------------------------------------
def test_a_failing_step_stops_the_run_and_names_it(converge):
    r = mode(converge, "lvsgen")
    assert r["fail_module"]["rc"] == 1, _ok(r["fail_module"])
    assert "error in step modules" in r["fail_module"]["stderr"] and "ip_vs_nosuch" in r["fail_module"]["stderr"]
    assert r["fail_rule"]["rc"] == 1, _ok(r["fail_rule"])
    assert "error in step ipvs" in r["fail_rule"]["stderr"] and f"{VIP_A}:81" in r["fail_rule"]["stderr"]
    assert r["fail_fixed"]["rc"] == 0, _ok(r["fail_fixed"])
    assert table(r["fail_fixed_saved"]) == rules_lines(converge["steps"][-1][1])


# --- setup.sh's flags on the live cluster ------------------------------------------------------------
def test_dry_run_changes_nothing_on_any_host(converge):
    """--dry-run of a build that differs (services, real servers, VIPs) leaves every host's
    snapshot as it was, and says on the director that changes are pending."""
    r = mode(converge, "lvsgen")
    assert r["flags_dry_run"]["lb"]["rc"] == 2, _ok(r["flags_dry_run"]["lb"])
    assert "would run: ipvsadm" in r["flags_dry_run"]["lb"]["stdout"]
    for host, result in r["flags_dry_run"].items():
        assert result["rc"] in (0, 2), (host, _ok(result))
    assert r["flags_dry_run_unchanged"] == {h: True for h in r["flags_dry_run"]}


def test_wrong_hostname_refuses_and_force_proceeds(converge):
    r = mode(converge, "lvsgen")
    wrong = r["flags_wrong_hostname"]
    assert wrong["rc"] == 1, _ok(wrong)
    assert "error in step preflight: this script is for" in wrong["stderr"], _ok(wrong)
    assert r["flags_wrong_hostname_unchanged"], "a refused run changed the host"
    force = r["flags_force"]
    assert force["rc"] == 0, _ok(force)
    assert "going on because of --force" in force["stdout"], _ok(force)
    assert table(r["flags_force_saved"]) == rules_lines(converge["steps"][0][1]), "--force did not apply the build"
    assert r["flags_back"]["rc"] == 0, _ok(r["flags_back"])


@pytest.mark.parametrize("point", ["files", "ipvs", "copy"])
def test_a_run_killed_halfway_completes_on_the_next_run(converge, point):
    """SIGKILL at a known point (after a file is written; between the add and the remove
    batches of the table; before the boot copy), then a plain run: it completes, the table is
    the build's, and the run after it changes nothing."""
    k = mode(converge, "lvsgen")["flags_killed"][point]
    want = rules_lines(converge["steps"][0][1])
    assert k["marker_seen"], f"{point}: the run never reached the kill point"
    assert k["rc"] == -9, k
    assert k["resume"]["rc"] == 0, _ok(k["resume"])
    assert table(k["resume_saved"]) == want
    assert k["again"]["rc"] == 0 and "no changes" in k["again"]["stdout"], _ok(k["again"])
    assert k["back"]["rc"] == 0, _ok(k["back"])
