"""Step 5: the plan. Every file of every host, each host's rendered in memory when asked for.

lvsgen.state works out what each host must look like; each module of lvsgen.artifacts spells
one kind of file from that state. This module only puts them together: which host gets which
files. Templates only loop and substitute; every token they print is computed before.
"""

from __future__ import annotations

from typing import Iterator, Mapping

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


class Plan(Mapping[str, list[File]]):
    """Every managed host's files, by host name; unmanaged real servers get nothing.

    A host's files are rendered each time they are looked up, and not kept: the writer
    takes one host at a time, so that a build holds one host's files, not every host's."""

    def __init__(self, cluster: Cluster):
        self._cluster = cluster
        self._hosts = {host.name: host for host in cluster.hosts}
        self._by_host = services_by_host(cluster)

    def __getitem__(self, name: str) -> list[File]:
        return host_files(self._cluster, self._hosts[name], self._by_host)

    def __contains__(self, name: object) -> bool:
        # Mapping's own __contains__ looks the item up, which would render the host's files.
        return name in self._hosts

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)


def plan(cluster: Cluster) -> Plan:
    return Plan(cluster)
