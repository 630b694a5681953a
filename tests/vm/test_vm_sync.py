"""Connection synchronisation between two directors in a real kernel (pytest -m vm), with
lvsgen's artifacts as they are (sync_daemons).

One VM boot runs cluster/driver.py's sync phase on tests/vm/sync/cluster.json: director lb1
serves a VIP and runs the master sync daemon, lb2 runs the backup daemon with the same syncid.
Connections made through lb1 must appear in lb2's connection table (ipvsadm -L -n -c), which
is what lets lb2 keep them alive if it takes the VIP over. Negative control: lb2's daemon
restarted by hand with another syncid sees none of the next connections; setup.sh restarts it
as described, and the ones after appear again. A second run changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from driven import boot_phase, one_network  # noqa: E402
from expect import Cluster, check_answers  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTER = HERE / "sync" / "cluster.json"


def topology(cluster: Cluster) -> dict:
    web = cluster.services[0]
    sync = {"master": "lb1", "backup": "lb2", "vip_port": f"{web['vip']}:{web['port']}", "wait": 4}
    return one_network(cluster, "sync", sync=sync)


@pytest.fixture(scope="module")
def sync_run(tmp_path_factory):
    cluster, r, _ = boot_phase(tmp_path_factory, CLUSTER, "sync", topology)
    return {"cluster": cluster, "r": r}


def test_setup_starts_each_daemon_as_described(sync_run):
    r = sync_run["r"]
    assert {h: x["rc"] for h, x in r["first"].items()} == {h: 0 for h in sync_run["cluster"].hosts}, r["first"]
    assert r["daemons"]["master"].startswith("master sync daemon (mcast=eth0, syncid=7,"), r["daemons"]
    assert r["daemons"]["backup"].startswith("backup sync daemon (mcast=eth0, syncid=7,"), r["daemons"]
    assert check_answers(sync_run["cluster"], r["answers"]) == []


def test_the_backup_knows_the_masters_connections(sync_run):
    r = sync_run["r"]
    assert len(r["master_seen"]) >= 4, r["master_seen"]
    assert set(r["master_seen"]) <= set(r["backup_seen"]), (r["master_seen"], r["backup_seen"])


def test_negative_control_another_syncid_hears_nothing_and_setup_puts_it_back(sync_run):
    r = sync_run["r"]
    new = set(r["master_seen_control"]) - set(r["master_seen"])
    assert len(new) >= 4, r["master_seen_control"]
    assert not new & set(r["backup_seen_control"]), r["backup_seen_control"]
    heal = r["heal"]["lb2"]
    assert heal["rc"] == 0, heal
    assert "+ ipvsadm --stop-daemon backup" in heal["output"], heal["output"]
    assert "+ ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 7" in heal["output"], heal["output"]
    assert r["daemons_healed"]["backup"].startswith("backup sync daemon (mcast=eth0, syncid=7,"), r["daemons_healed"]
    after = set(r["master_seen_healed"]) - set(r["master_seen_control"])
    assert len(after) >= 4 and after <= set(r["backup_seen_healed"]), (after, r["backup_seen_healed"])


def test_a_second_run_changes_nothing(sync_run):
    assert all(x["rc"] == 0 and "no changes" in x["output"] for x in sync_run["r"]["second"].values()), sync_run["r"]["second"]
