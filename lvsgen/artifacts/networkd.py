"""systemd-networkd files (etc/systemd/network): lvsgen's own devices, and the NIC only when
the cluster file says lvsgen owns it or names the host's own file for a drop-in."""

from __future__ import annotations

from dataclasses import dataclass

from lvsgen.addresses import text
from lvsgen.files import DROPIN, NETWORKD, UNIT_PREFIX, File
from lvsgen.render import render
from lvsgen.state import HostState


@dataclass(frozen=True)
class Unit:
    path: str
    template: str
    context: dict  # type: ignore[type-arg]


def _unit_addresses(state: HostState, device: str) -> list[dict[str, object]]:
    return [{"cidr": a.cidr, "nodad": a.nodad} for a in state.addresses if a.device == device]


def _networkd_units(state: HostState) -> list[Unit]:
    """systemd-networkd files. lvsgen writes a whole .network file only for a link it owns:
    its own devices (lvs0, tunl0) and, when the cluster file says so (own_interface), the NIC.
    networkd applies one .network file per link, the first by name from /etc, /run and
    /usr/lib together; a file of lvsgen's for a NIC would shadow the host's own (netplan's,
    cloud-init's) and take away its DHCP lease, gateway and DNS. On a NIC lvsgen does not own,
    what it needs goes into a drop-in for the host's own file (network_file), or, without
    one, is added by the lvsgen-network boot unit. The loopback device gets no file either:
    the early boot unit puts real servers' VIPs on it."""
    host = state.host
    units: list[Unit] = []
    nic = host.interface
    extra = [a for a in _unit_addresses(state, nic) if a["cidr"] != host.address.with_prefixlen]
    gateways = [r.via for r in state.routes if r.device == nic]
    own = host.own_interface
    if own is not None:
        if own.gateway is not None:
            gateways = [text(own.gateway)] + gateways
        units.append(Unit(
            f"{NETWORKD}/{UNIT_PREFIX}{nic}.network",
            "nic.network.j2",
            {
                "device": nic,
                "addresses": [{"cidr": host.address.with_prefixlen, "nodad": False}] + extra,
                "gateways": gateways,
                "dns": [text(a) for a in own.dns],
                "dhcp": own.dhcp,
            },
        ))
    elif host.network_file and (extra or gateways):
        path = f"{NETWORKD}/{host.network_file}.d/{DROPIN}"
        units.append(Unit(path, "dropin.conf.j2", {"addresses": extra, "gateways": gateways}))
    for device in state.dummies:
        units.append(Unit(f"{NETWORKD}/{UNIT_PREFIX}{device}.netdev", "dummy.netdev.j2", {"device": device}))
    for device in state.up_devices:
        if device in state.nics or device == "lo":
            continue
        units.append(
            Unit(
                f"{NETWORKD}/{UNIT_PREFIX}{device}.network",
                "device.network.j2",
                {"device": device, "addresses": _unit_addresses(state, device), "noarp": device in state.noarp_devices},
            )
        )
    return units


def files(state: HostState, head: str) -> list[File]:
    return [File(unit.path, render(unit.template, header=head, **unit.context)) for unit in _networkd_units(state)]
