"""The host-side helpers every VM phase judges with (tests/vm/driven.py), on hand-made results:
each must report what it is there to catch, so that a phase cannot pass for want of a check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "vm"))

from driven import cluster_files, second_run_problems  # noqa: E402
from expect import Cluster  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TUN = ROOT / "tests" / "vm" / "tun" / "cluster.json"

SNAPSHOT = "## addresses\n1: lo inet 127.0.0.1/8\n## routes\ndefault via 192.0.2.254\n## sysctls\nnet.ipv4.ip_forward = 0\n## files\nabc /etc/lvsgen/ipvsadm.rules\n## ipvs\n-A -t 192.0.2.110:80 -s wrr\n## record\n"


def _converged(cluster: Cluster) -> dict:
    return {"second": {h: {"rc": 0, "output": "lvsgen[x]: no changes: already in the described state\n"} for h in cluster.hosts},
            "before": {h: SNAPSHOT for h in cluster.hosts}, "after": {h: SNAPSHOT for h in cluster.hosts}}


def test_a_converged_second_run_has_no_problem() -> None:
    cluster = Cluster(TUN)
    assert second_run_problems(cluster, _converged(cluster)) == []


@pytest.mark.parametrize("spoil", ["state", "rc", "changes", "missing-host", "section"])
def test_second_run_problems_names_each_way_a_run_can_be_wrong(spoil: str) -> None:
    cluster = Cluster(TUN)
    r = _converged(cluster)
    host = sorted(cluster.hosts)[0]
    if spoil == "state":
        r["after"][host] = SNAPSHOT.replace("ip_forward = 0", "ip_forward = 1")
    elif spoil == "rc":
        r["second"][host]["rc"] = 1
    elif spoil == "changes":
        r["second"][host]["output"] = "lvsgen[x]: 1 change(s) made\n"
    elif spoil == "missing-host":
        del r["second"][host]
    else:
        r["before"][host] = r["after"][host] = SNAPSHOT.replace("## routes\n", "")
    problems = second_run_problems(cluster, r)
    assert len(problems) == 1 and problems[0].startswith(f"{host}: "), problems
    if spoil == "state":
        assert "-net.ipv4.ip_forward = 0" in problems[0] and "+net.ipv4.ip_forward = 1" in problems[0]


def test_cluster_files_are_the_shipped_ones_unless_the_variable_names_others(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shipped = [TUN]
    monkeypatch.delenv("LVSGEN_VM_CLUSTER_TUN", raising=False)
    assert cluster_files("tun", shipped) == shipped
    a, b = tmp_path / "a dir" / "one.json", tmp_path / "two.json"
    monkeypatch.setenv("LVSGEN_VM_CLUSTER_TUN", f"{a}:{b}")
    assert cluster_files("tun", shipped) == [a, b]


def test_after_a_boot_path_the_record_may_only_adopt_files_and_links() -> None:
    cluster = Cluster(TUN)
    r = _converged(cluster)
    host = sorted(cluster.hosts)[0]
    for h in cluster.hosts:
        r["before"][h] = r["after"][h] = SNAPSHOT + "addr\t192.0.2.110/32\tlvs0\n"
    r["after"][host] += "file\t/etc/lvsgen/ipvsadm.rules\nlink\t/etc/systemd/system/multi-user.target.wants/lvsgen.service\n"
    assert second_run_problems(cluster, r, after_boot=True) == []
    assert len(second_run_problems(cluster, r)) == 1  # a plain second run may not change the record
    r["after"][host] += "route\t-4\t192.0.2.1\teth0\t\n"
    problems = second_run_problems(cluster, r, after_boot=True)
    assert len(problems) == 1 and "gained 'route" in problems[0], problems
