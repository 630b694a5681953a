"""Host side of every test that runs tests/vm/cluster/driver.py in the VM: copy the driver
next to the built trees and topology.json, boot once, and hand back what the driver recorded.
Also the parts of a topology and of a test's fixture that the single-network tests share."""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

import vm
from cases import lvsgen
from expect import Cluster, expected_answers

HERE = Path(__file__).resolve().parent


def cluster_files(phase: str, shipped: list[Path]) -> list[Path]:
    """The cluster files a phase runs on: LVSGEN_VM_CLUSTER_<PHASE> (a path, or several joined by
    the path separator) when it is set, else the ones the project ships (tests/vm/README.md)."""
    chosen = os.environ.get(f"LVSGEN_VM_CLUSTER_{phase.upper()}", "")
    if not chosen:
        return shipped
    return [Path(p).resolve() for p in chosen.split(os.pathsep) if p]


def _adopted(before: str, after: str) -> tuple[str, str, list[str]]:
    """BEFORE and AFTER without the record (its sum in "## files", its lines in "## record"),
    and what the record gained: the files and boot-unit links that setup.sh adopts on its first
    run after a boot path (cloud-init or the boot units installed them, and recorded nothing)."""
    def split(text: str) -> tuple[str, set[str]]:
        out, record, section = [], set(), ""
        for line in text.splitlines(True):
            if line.startswith("## "):
                section = line.strip()
            elif section == "## record":
                record.add(line)
                continue
            elif section == "## files" and line.rstrip().endswith(" /var/lib/lvsgen/record"):
                continue
            out.append(line)
        return "".join(out), record
    b_text, b_record = split(before)
    a_text, a_record = split(after)
    bad = [f"the record lost {line.strip()!r}" for line in sorted(b_record - a_record)]
    bad += [f"the record gained {line.strip()!r}, which is not a file or link setup.sh adopts"
            for line in sorted(a_record - b_record) if not line.startswith(("file\t", "link\t"))]
    return b_text, a_text, bad


def second_run_problems(cluster: Cluster, r: dict, after_boot: bool = False) -> list[str]:
    """What is wrong with a run on a converged cluster (driver.py's second_run): every host's
    setup.sh must succeed and say "no changes", and leave its state byte for byte as it was.
    AFTER_BOOT: the first setup.sh after a boot path, which may only add to lvsgen's record the
    files and links that path installed (see _adopted)."""
    problems = []
    for host in cluster.hosts:
        run = r.get("second", {}).get(host)
        if run is None:
            problems.append(f"{host}: no second run")
            continue
        if run["rc"] != 0 or "no changes" not in run["output"]:
            problems.append(f"{host}: the second run did not say 'no changes' (rc {run['rc']}):\n{run['output'][-1500:]}")
        before, after = r["before"].get(host, ""), r["after"].get(host, "")
        if after_boot:
            before, after, adopted = _adopted(before, after)
            problems += [f"{host}: {x}" for x in adopted]
        for section in ("## addresses", "## routes", "## sysctls", "## files", "## ipvs", "## record"):
            if section not in before:
                problems.append(f"{host}: the snapshot has no {section!r} section")
        if before != after:
            diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "before", "after", n=1))
            problems.append(f"{host}: the second run changed the host's state:\n{diff[:3000]}")
    return problems


def run_driver(work: Path, topology: dict, timeout: int) -> tuple[vm.VMRun, dict]:
    """Boot the VM on WORK (the trees are built there already) with TOPOLOGY; returns the run
    and /test/results.json, or fails with the VM's diagnostics when the driver wrote none."""
    (work / "topology.json").write_text(json.dumps(topology, indent=1))
    for f in ("run.sh", "driver.py", "peer.py"):
        shutil.copy2(HERE / "cluster" / f, work / f)
    run = vm.boot(work, timeout=timeout)
    print(run.summary())
    results_file = work / "results.json"
    assert results_file.exists(), run.diagnostics()
    (work / "console.txt").write_text(run.output)
    return run, json.loads(results_file.read_text())


def host_entries(cluster: Cluster) -> list[dict]:
    """The topology's hosts for a cluster on one network: each serves its services' VIP ports,
    and its own default route goes to the network's first address, which no host has."""
    hosts = []
    for name, host in cluster.hosts.items():
        own = ipaddress.ip_interface(host["address"])
        hosts.append({
            "name": name, "hostname": cluster.hostname(name), "role": host["role"],
            "interface": host["interface"], "network": str(own.network), "own_address": str(own),
            "gateway": str(own.network[1] if own.version == 6 else own.network[-2]),
            "serve": sorted({f"{svc['protocol']}:{svc['vip']}:{svc['port']}" for svc in cluster.services if name in svc["weights"]}),
            "addresses": [list(a) for a in cluster.addresses(name)], "own_units": {},
        })
    return hosts


def one_network(cluster: Cluster, phase: str, **extra: object) -> dict:
    """A whole topology for PHASE: the hosts and a client on the cluster's one network, and a
    plan of each service's expected_answers requests."""
    hosts = host_entries(cluster)
    network = ipaddress.ip_network(hosts[0]["network"])
    plan = [
        {"key": svc["key"], "protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"], "n": expected_answers(svc)[0]}
        for svc in cluster.services
    ]
    return {
        "hosts": hosts, "networks": [str(network)],
        "client": {"name": "client", "interface": "eth0", "address": f"{network[0x50]}/{network.prefixlen}", "network": str(network)},
        "vips": [{"address": v["address"], "director": v["director"]} for v in cluster.vips],
        "plan": plan, "big": [], "mutants": {}, "trees": {"main": "out"}, "phases": [phase], **extra,
    }


def boot_phase(factory: pytest.TempPathFactory, path: Path, phase: str, topology: Callable[[Cluster], dict],
               extra_trees: dict[str, dict] | None = None) -> tuple[Cluster, dict, Path]:
    """Build PATH, boot the VM on TOPOLOGY(cluster) and return (cluster, PHASE's results, the
    work folder); skips without a usable VM, fails with the VM's diagnostics. EXTRA_TREES:
    {name: cluster document}, each built into out-NAME and given to the driver as tree NAME.
    The results of every other phase the topology asks for are under results["phases"]."""
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    work = factory.mktemp(f"vm-{phase}")
    build = lvsgen("build", str(path), "-o", str(work / "out"))
    assert build.returncode == 0, build.stderr
    for name, doc in (extra_trees or {}).items():
        (work / f"{name}.json").write_text(json.dumps(doc, indent=1))
        build = lvsgen("build", str(work / f"{name}.json"), "-o", str(work / f"out-{name}"))
        assert build.returncode == 0, f"tree {name}: {build.stderr}"
    cluster = Cluster(path)
    topo = topology(cluster)
    topo["trees"] = {**topo["trees"], **{name: f"out-{name}" for name in (extra_trees or {})}}
    run, results = run_driver(work, topo, timeout=900)
    r = results.get(phase)
    assert r is not None and "error" not in r, (r or {}).get("error", "") + "\n" + run.diagnostics()
    r["phases"] = {name: results.get(name) for name in topo["phases"] if name != phase}
    for name, other in r["phases"].items():
        assert other is not None and "error" not in other, f"phase {name}: " + (other or {}).get("error", "") + "\n" + run.diagnostics()
    return cluster, r, work
