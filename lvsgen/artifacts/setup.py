"""The host's setup.sh, the engine it runs (lvsgen.sh, the same on every host) and the boot
units that run it (etc/systemd/system/lvsgen*.service). setup.sh only declares the host's
state as shell arrays; the logic is in the engine, which lvsgen.engine assembles from the
plain shell and awk files in templates/host/ (not templates)."""

from __future__ import annotations

from lvsgen import engine as host_engine
from lvsgen.files import HOST_COPY, LIBRARY, MODE_SCRIPT, NFTABLES, PROC_IMAGE, RULES, SETUP, THRESHOLDS, UNIT, UNIT_NETWORK, File
from lvsgen.model import Cluster
from lvsgen.render import render
from lvsgen.state import HostState, needs_network


def unit_files(cluster: Cluster, state: HostState, head: str) -> list[File]:
    """The early boot unit on every host, and the one after network-online where the host has
    state on its NIC (lvsgen.state.needs_network)."""
    context = {"header": head, "host": state.host.name, "cluster": cluster.name, "exec": f"{HOST_COPY}/{SETUP}"}
    units = [File(UNIT, render("lvsgen.service.j2", **context))]
    if needs_network(state):
        units.append(File(UNIT_NETWORK, render("lvsgen-network.service.j2", **context)))
    return units


def files(cluster: Cluster, state: HostState, head: str, installed: list[File], units: list[File], engine: list[File]) -> list[File]:
    """setup.sh, which installs the files in `installed` (host-folder paths) at /<path> and
    enables the boot units among them, and the engine; `engine` holds the engine's own data
    (the rules file's image), which stays in the host folder and its boot copy."""
    host = state.host
    installed = sorted(installed, key=lambda f: f.path)
    text = render(
        "setup.sh.j2",
        header=head,
        host=host.name,
        hostname=host.hostname,
        cluster=cluster.name,
        files=[f"{f.path} {f.mode:04o}" for f in installed],
        modules=state.modules,
        sysctls=[f"{s.key} {s.value}" for s in state.sysctls],
        dummies=state.dummies,
        noarp_devices=state.noarp_devices,
        up_devices=state.up_devices,
        addresses=[f"{a.cidr} {a.device}" + (" nodad" if a.nodad else "") for a in state.addresses],
        host_addresses=[f"{a.cidr} {a.device}" for a in state.host_addresses],
        nics=state.nics,
        routes=[f"{r.family} {r.via} {r.device}" for r in state.routes],
        fou_ports=state.fou_ports,
        director=host.is_director,
        rules=RULES,
        image=PROC_IMAGE if any(f.path == PROC_IMAGE for f in engine) else "",
        thresholds=THRESHOLDS if any(f.path == THRESHOLDS for f in installed) else "",
        nftables=NFTABLES if state.has_nft_table else "",
        table_owned=int(host.owns_ipvs_table),
        drain_timeout=host.drain_timeout,
        timeouts=" ".join(map(str, host.ipvs_timeouts)) if any(host.ipvs_timeouts) else "",
        conn_tab_bits="" if host.conn_tab_bits is None else host.conn_tab_bits,
        sync_daemons=[f"{d.state} {d.interface} {d.syncid} {d.maxlen or 0}" for d in host.sync_daemons],
        units=[u.path for u in units],
    )
    return [File(SETUP, text, MODE_SCRIPT), File(LIBRARY, host_engine.text())]
