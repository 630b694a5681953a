"""Step 5: the plan. Every file of every host, in memory.

lvsgen.state works out what each host must look like; each module of lvsgen.artifacts spells
one kind of file from that state. This module only puts them together: which host gets which
files. Templates only loop and substitute; every token they print is computed before.
"""

from __future__ import annotations

from lvsgen.artifacts import cloud_init, ipvsadm, modules, networkd, nftables, setup, sysctl
from lvsgen.files import File, header
from lvsgen.model import Cluster, Host
from lvsgen.state import ByHost, host_state, services_by_host


def host_files(cluster: Cluster, host: Host, by_host: ByHost) -> list[File]:
    state = host_state(cluster, host, by_host)
    head = header(cluster)
    units = setup.unit_files(cluster, state, head)
    installed = [
        *ipvsadm.files(state),
        *nftables.files(state, head),
        *units,
        *sysctl.files(state, head),
        *modules.files(state, head),
        *networkd.files(state, head),
    ]
    engine = ipvsadm.image_files(installed)
    folder = installed + engine + setup.files(cluster, state, head, installed, units, engine)
    folder += cloud_init.files(state, head, folder)
    return sorted(folder, key=lambda f: f.path)


def plan(cluster: Cluster) -> dict[str, list[File]]:
    """Every managed host's files, by host name. Unmanaged real servers get nothing."""
    by_host = services_by_host(cluster)
    return {host.name: host_files(cluster, host, by_host) for host in cluster.hosts}
