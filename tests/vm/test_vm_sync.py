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

from driven import boot_phase, cluster_files, one_network, second_run_problems  # noqa: E402
from expect import Cluster, check_answers, table_problems  # noqa: E402

pytestmark = pytest.mark.vm

CLUSTER = HERE / "sync" / "cluster.json"


def daemons_of(cluster: Cluster, state: str) -> list[tuple[str, dict]]:
    """(director, its sync daemon entry) for every director the file gives a STATE daemon."""
    return [(name, d) for name, h in sorted(cluster.hosts.items()) if h["role"] == "director"
            for d in h.get("sync_daemons", []) if d["state"] == state]


def roles(cluster: Cluster) -> dict:
    """From the file: the master, a backup with the same syncid, and the master's service whose
    connections are watched."""
    masters, backups = daemons_of(cluster, "master"), daemons_of(cluster, "backup")
    assert masters and backups, "the sync cluster needs a master and a backup daemon"
    master, mine = masters[0]
    backup, theirs = next(((b, d) for b, d in backups if d["syncid"] == mine["syncid"] and b != master), (None, None))
    assert backup is not None, f"no backup daemon with syncid {mine['syncid']}"
    web = next(s for s in cluster.services if s["director"] == master and s["fwmark"] is None)
    return {"master": master, "backup": backup, "syncid": mine["syncid"], "other_syncid": mine["syncid"] % 255 + 1,
            "master_if": mine.get("interface", cluster.hosts[master]["interface"]),
            "backup_if": theirs.get("interface", cluster.hosts[backup]["interface"]),
            "vip_port": f"{web['vip']}:{web['port']}" if ":" not in web["vip"] else f"[{web['vip']}]:{web['port']}"}


def topology(cluster: Cluster) -> dict:
    x = roles(cluster)
    sync = {"master": x["master"], "backup": x["backup"], "vip_port": x["vip_port"], "other_syncid": x["other_syncid"], "wait": 4}
    return one_network(cluster, "sync", sync=sync)


CLUSTERS = cluster_files("sync", [CLUSTER])


@pytest.fixture(scope="module", params=CLUSTERS, ids=[p.name for p in CLUSTERS])
def sync_run(request, tmp_path_factory):
    cluster, r, _ = boot_phase(tmp_path_factory, request.param, "sync", topology)
    return {"cluster": cluster, "r": r, **roles(cluster)}


def test_setup_starts_each_daemon_as_described(sync_run):
    r, x = sync_run["r"], sync_run
    assert {h: y["rc"] for h, y in r["first"].items()} == {h: 0 for h in sync_run["cluster"].hosts}, r["first"]
    assert r["daemons"]["master"].startswith(f"master sync daemon (mcast={x['master_if']}, syncid={x['syncid']},"), r["daemons"]
    assert r["daemons"]["backup"].startswith(f"backup sync daemon (mcast={x['backup_if']}, syncid={x['syncid']},"), r["daemons"]
    assert check_answers(sync_run["cluster"], r["answers"]) == []


def test_the_backup_knows_the_masters_connections(sync_run):
    r = sync_run["r"]
    assert len(r["master_seen"]) >= 4, r["master_seen"]
    assert set(r["master_seen"]) <= set(r["backup_seen"]), (r["master_seen"], r["backup_seen"])


def test_negative_control_another_syncid_hears_nothing_and_setup_puts_it_back(sync_run):
    r, x = sync_run["r"], sync_run
    new = set(r["master_seen_control"]) - set(r["master_seen"])
    assert len(new) >= 4, r["master_seen_control"]
    assert not new & set(r["backup_seen_control"]), r["backup_seen_control"]
    heal = r["heal"][x["backup"]]
    assert heal["rc"] == 0, heal
    assert "+ ipvsadm --stop-daemon backup" in heal["output"], heal["output"]
    assert f"+ ipvsadm --start-daemon backup --mcast-interface {x['backup_if']} --syncid {x['syncid']}" in heal["output"], heal["output"]
    assert r["daemons_healed"]["backup"].startswith(f"backup sync daemon (mcast={x['backup_if']}, syncid={x['syncid']},"), r["daemons_healed"]
    after = set(r["master_seen_healed"]) - set(r["master_seen_control"])
    assert len(after) >= 4 and after <= set(r["backup_seen_healed"]), (after, r["backup_seen_healed"])


def test_a_second_run_changes_nothing(sync_run):
    assert second_run_problems(sync_run["cluster"], sync_run["r"]) == []


def test_the_saved_tables_thresholds_and_timeouts_are_what_the_file_says(sync_run):
    assert table_problems(sync_run["cluster"], sync_run["r"]["tables"]) == []
