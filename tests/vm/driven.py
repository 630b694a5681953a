"""Host side of every test that runs tests/vm/cluster/driver.py in the VM: copy the driver
next to the built trees and topology.json, boot once, and hand back what the driver recorded.
Also the parts of a topology and of a test's fixture that the single-network tests share."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

import vm
from cases import lvsgen
from expect import Cluster, expected_answers

HERE = Path(__file__).resolve().parent


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


def boot_phase(factory: pytest.TempPathFactory, path: Path, phase: str, topology: Callable[[Cluster], dict]) -> tuple[Cluster, dict, Path]:
    """Build PATH, boot the VM on TOPOLOGY(cluster) and return (cluster, PHASE's results, the
    work folder); skips without a usable VM, fails with the VM's diagnostics."""
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    work = factory.mktemp(f"vm-{phase}")
    build = lvsgen("build", str(path), "-o", str(work / "out"))
    assert build.returncode == 0, build.stderr
    cluster = Cluster(path)
    run, results = run_driver(work, topology(cluster), timeout=900)
    r = results.get(phase)
    assert r is not None and "error" not in r, (r or {}).get("error", "") + "\n" + run.diagnostics()
    return cluster, r, work
