"""What one host must look like, computed from the model: its addresses, devices, sysctls,
modules, routes and IPVS services. Nothing here knows how a file spells it; the modules in
lvsgen.artifacts render this state, one kind of file each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from lvsgen.files import NFTABLES
from lvsgen.forward import TABLE as NFT_TABLE
from lvsgen.forward import ForwardPolicy, forward_policy
from lvsgen.marks import MarkRule, mark_rules
from lvsgen.addresses import text
from lvsgen.model import Cluster, Forwarding, Host, IPAddress, Service, Vip, VipDevice
from lvsgen.semantic import DUMMY_DEVICE, GRE_DEVICE, TUNNEL_DEVICE

ByHost = dict[str, list[tuple[Vip, Service]]]


@dataclass(frozen=True)
class Sysctl:
    key: str
    value: int
    comment: tuple[str, ...] = ()


@dataclass(frozen=True)
class Address:
    """An address setup.sh ensures on a device, and networkd configures."""

    cidr: str  # 192.0.2.100/32
    device: str
    nodad: bool  # IPv6 VIPs: no duplicate address detection (every real server holds the VIP)


@dataclass(frozen=True)
class Route:
    family: str  # "-4" or "-6"
    via: str
    device: str


@dataclass
class HostState:
    """What one host must look like: the facts every artifact of the host is made from."""

    host: Host
    services: list[Service] = field(default_factory=list)  # directors: the services they hold
    addresses: list[Address] = field(default_factory=list)
    # The host's own addresses ('address', 'nat_address'): setup.sh checks they are there and
    # never adds or removes them, unless lvsgen owns the interface (then they are in addresses).
    host_addresses: list[Address] = field(default_factory=list)
    nics: list[str] = field(default_factory=list)  # the host's interfaces, which must exist
    dummies: list[str] = field(default_factory=list)
    up_devices: list[str] = field(default_factory=list)
    noarp_devices: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    sysctls: list[Sysctl] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    forward: ForwardPolicy | None = None  # NAT directors: what forwarding may carry
    marks: tuple[MarkRule, ...] = ()  # directors: the marks of firewall-mark services
    fou_ports: list[int] = field(default_factory=list)  # real servers of gue tunnels: GUE receive ports

    @property
    def has_nft_table(self) -> bool:
        """Does the host need nftables table inet lvsgen (a forwarding policy, or marks)?"""
        return self.forward is not None or bool(self.marks)


def host_cidr(address: IPAddress) -> str:
    return f"{text(address)}/{address.max_prefixlen}"


def sysctl_key(*parts: str) -> str:
    """A sysctl name. An interface name with a dot (eth0.100) needs the '/' form, in which a
    dot is part of a name rather than a separator (sysctl.d(5), sysctl(8))."""
    return "/".join(parts) if any("." in p for p in parts) else ".".join(parts)


def _add_unique(items: list, new: Iterable) -> None:  # type: ignore[type-arg]
    for item in new:
        if item not in items:
            items.append(item)


def _by_address(vips: Iterable[Vip]) -> list[Vip]:
    return sorted(vips, key=lambda v: (v.address.version, v.address))



# --- role to state ----------------------------------------------------------------------------
def _own_address(state: HostState, host: Host, cidr: str, device: str) -> None:
    """The host's own address on one of its NICs: lvsgen's to add only on a NIC it owns."""
    _add_unique(state.nics, [device])
    if host.own_interface is not None and device == host.interface:
        _add_unique(state.up_devices, [device])
        state.addresses.append(Address(cidr, device, False))
    else:
        state.host_addresses.append(Address(cidr, device, False))


def _director_state(cluster: Cluster, host: Host) -> HostState:
    state = HostState(host)
    _own_address(state, host, host.address.with_prefixlen, host.interface)
    if host.nat_address is not None and host.nat_interface is not None:
        _own_address(state, host, host.nat_address.with_prefixlen, host.nat_interface)
    _add_unique(state.nics, [d.interface for d in host.sync_daemons])
    for vip in _by_address(cluster.vips_of(host.name)):
        state.services.extend(vip.services)
        if vip.address.version == 4:
            # On lvsgen's own dummy device, not the NIC: nothing that reconfigures the NIC (the
            # host's network manager, a DHCP client, netplan apply) can take the VIP away. The
            # director still answers ARP for it on the NIC: with arp_ignore=0 the kernel
            # answers for any address of the host, whatever device holds it.
            _add_unique(state.dummies, [DUMMY_DEVICE])
            _add_unique(state.up_devices, [DUMMY_DEVICE])
            state.addresses.append(Address(host_cidr(vip.address), DUMMY_DEVICE, False))
        else:
            # IPv6 neighbour discovery answers only for addresses of the device the
            # solicitation came in on, so an IPv6 VIP must be on the NIC itself.
            state.addresses.append(Address(host_cidr(vip.address), host.interface, False))
    if DUMMY_DEVICE in state.dummies:
        state.modules.append("dummy")
    state.modules.append("ip_vs")
    _add_unique(state.modules, sorted({f"ip_vs_{svc.scheduler}" for svc in state.services}))
    engines = {svc.persistence.engine for svc in state.services if svc.persistence and svc.persistence.engine}
    _add_unique(state.modules, sorted(f"ip_vs_pe_{engine}" for engine in engines))
    if host.nat_forwarding == "lvs-only":
        state.forward = forward_policy(state.services)
    state.marks = mark_rules(state.services)
    if state.has_nft_table:
        state.modules.append("nf_tables")
    nat_families = sorted({svc.address.version for svc in state.services if svc.forwarding is Forwarding.NAT})
    for family in nat_families:
        key = "net.ipv4.ip_forward" if family == 4 else "net.ipv6.conf.all.forwarding"
        why = ["NAT: replies from the real servers are routed back through this director."]
        if state.forward is not None:
            why.append(f"/{NFTABLES} (nftables table inet {NFT_TABLE}) lets only those replies through.")
        else:
            why.append("nat_forwarding is 'host': the host's own firewall decides what else is forwarded.")
        state.sysctls.append(Sysctl(key, 1, tuple(why)))
        if family == 6:
            state.sysctls.append(Sysctl(
                sysctl_key("net", "ipv6", "conf", host.interface, "accept_ra"), 2,
                (
                    "IPv6 forwarding is global, and with it on the kernel ignores router",
                    "advertisements (accept_ra=1 means 'only when not forwarding'). 2 keeps accepting them",
                    f"on {host.interface}, the client side, so a default route learned from RAs stays.",
                ),
            ))
    if DUMMY_DEVICE in state.dummies:
        state.sysctls.extend(_director_arp_sysctls(host.interface))
    state.sysctls.append(Sysctl(
        sysctl_key("net", "ipv4", "conf", host.interface, "proxy_arp"), 0,
        (
            f"Director: on {host.interface} it answers ARP for its own addresses and VIPs only. With",
            "proxy_arp it would also answer for every address it routes through another interface",
            "(a NAT director's real servers, say) and draw their traffic to itself. The kernel ORs",
            "conf.all into this; lvsgen leaves conf.all alone, as another interface may rely on it.",
        ),
    ))
    for index, (knob, value) in enumerate(host.ipvs_sysctls):
        comment: tuple[str, ...] = ()
        if index == 0:
            comment = (
                "IPVS knobs. They exist once ip_vs is loaded; modules-load.d/lvsgen.conf loads it",
                "early at boot so that systemd-sysctl finds them.",
            )
            if not nat_families:
                comment += ("No ip_forward here: DR and TUN directors do not route replies; only NAT needs it.",)
        reason = IPVS_KNOB_REASONS.get(knob)
        if reason:
            comment += ("",) + reason if comment else reason
        state.sysctls.append(Sysctl(f"net.ipv4.vs.{knob}", value, comment))
    return state


# Why a director sets an IPVS knob (Documentation/networking/ipvs-sysctl.rst), printed above it
# in the sysctl.d drop-in. Knobs without an entry are printed bare.
IPVS_KNOB_REASONS: dict[str, tuple[str, ...]] = {
    "backup_only": (
        "backup_only: 1 stops this director from directing while its backup sync daemon runs,",
        "for a director that is also a real server of its master (DR/TUN): packets would loop.",
    ),
    "conn_reuse_mode": (
        "conn_reuse_mode: what a new connection from a client port that still has an IPVS entry",
        "gets. 0: the old real server. 1 (the kernel's default): rescheduled when that is safe",
        "(the old one expired, or is in TIME_WAIT). 2 adds FIN_WAIT, the last state a DR director",
        "sees, which helps a busy cluster use real servers just added.",
    ),
    "conntrack": (
        "conntrack: 1 keeps netfilter connection tracking for IPVS flows, which a firewall rule on",
        "'ct state' for them needs, at a cost per connection. 0 unless such a rule exists.",
    ),
    "expire_nodest_conn": (
        "expire_nodest_conn: 1 drops a connection whose real server was removed at its next",
        "packet, so that the client reconnects to a live one instead of hanging.",
    ),
    "expire_quiescent_template": (
        "expire_quiescent_template: 1 expires the persistence templates of a real server at",
        "weight 0, so that persistent clients move when it is drained.",
    ),
    "pmtu_disc": (
        "pmtu_disc: 1 (the kernel's default) sends TUN packets with DF, and a client whose packets",
        "do not fit the tunnel gets ICMP 'fragmentation needed'; 0 fragments the outer packet.",
    ),
    "sloppy_sctp": (
        "sloppy_sctp: 1 lets the director pick up an SCTP association at any chunk, not only INIT:",
        "a backup without a sync daemon keeps the associations it inherits at a failover.",
    ),
    "sloppy_tcp": (
        "sloppy_tcp: 1 lets the director pick up a TCP connection at any packet, not only SYN:",
        "a backup without a sync daemon keeps the connections it inherits at a failover.",
    ),
}


def services_by_host(cluster: Cluster) -> ByHost:
    """Each managed real server's (VIP, service) pairs, VIPs in address order."""
    index: ByHost = {}
    for vip in _by_address(cluster.vips):
        for svc in vip.services:
            for name in dict.fromkeys(rs.host for rs in svc.real_servers if rs.host):
                index.setdefault(name, []).append((vip, svc))
    return index


def _real_server_state(cluster: Cluster, host: Host, services: list[tuple[Vip, Service]]) -> HostState:
    state = HostState(host)
    _own_address(state, host, host.address.with_prefixlen, host.interface)
    vip_device = DUMMY_DEVICE if host.vip_device is VipDevice.DUMMY else "lo"
    hidden_v4 = False
    for vip, svc in services:
        if svc.forwarding is Forwarding.DR:
            if vip_device == DUMMY_DEVICE:
                _add_unique(state.dummies, [DUMMY_DEVICE])
                _add_unique(state.modules, ["dummy"])
                _add_unique(state.noarp_devices, [DUMMY_DEVICE])
            _add_unique(state.up_devices, [vip_device])
            _add_unique(state.addresses, [Address(host_cidr(svc.address), vip_device, svc.address.version == 6)])
            hidden_v4 = hidden_v4 or svc.address.version == 4
        elif svc.forwarding is Forwarding.TUN:
            tunnel = svc.tunnel
            assert tunnel is not None
            if tunnel.kind == "gre":
                device = GRE_DEVICE
                _add_unique(state.modules, ["ip_gre"])  # gre0 comes with it
            else:
                device = TUNNEL_DEVICE
                _add_unique(state.modules, ["ipip"])  # tunl0 comes with it
                if tunnel.kind == "gue":
                    # GUE packets to this UDP port are opened and their IPIP payload handed to tunl0.
                    _add_unique(state.modules, ["fou"])
                    _add_unique(state.fou_ports, [tunnel.port])
            _add_unique(state.up_devices, [device])
            _add_unique(state.addresses, [Address(host_cidr(svc.address), device, False)])
            hidden_v4 = True
        else:
            director = cluster.host(vip.director)
            via = _nat_gateway(director, host)
            route = Route("-6" if via.version == 6 else "-4", via.compressed, host.interface)
            _add_unique(state.routes, [route])
    if hidden_v4:
        state.sysctls.extend(_arp_sysctls(host.interface))
    for device in (TUNNEL_DEVICE, GRE_DEVICE):
        if device in state.up_devices:
            state.sysctls.extend(_tunnel_sysctls(device))
    return state


def _nat_gateway(director: Host, host: Host) -> IPAddress:
    for candidate in (director.nat_address, director.address):
        if candidate is not None and host.address.ip in candidate.network:
            return candidate.ip
    raise AssertionError("semantic checks guarantee a NAT real server shares a director network")


def _arp_sysctls(interface: str) -> list[Sysctl]:
    why = (
        "LVS-DR/TUN real server: it holds the VIPs but must never answer ARP for them; only the",
        "director may. arp_ignore=1: answer ARP only for addresses on the interface the request",
        "came in on. arp_announce=2: never use a VIP as the source of this host's own ARP requests.",
        "The kernel uses the larger of conf.all and conf.<interface>: 'all' covers every",
        f"interface, '{interface}' (the one facing the VIP network) states the intent. Setting them",
        "on lo alone, as older guides do, changes nothing: ARP requests arrive on the NIC.",
    )
    return [
        Sysctl(sysctl_key("net", "ipv4", "conf", "all", "arp_ignore"), 1, why),
        Sysctl(sysctl_key("net", "ipv4", "conf", interface, "arp_ignore"), 1),
        Sysctl(sysctl_key("net", "ipv4", "conf", "all", "arp_announce"), 2),
        Sysctl(sysctl_key("net", "ipv4", "conf", interface, "arp_announce"), 2),
    ]


def _director_arp_sysctls(interface: str) -> list[Sysctl]:
    why = (
        f"Director: its IPv4 VIPs are on {DUMMY_DEVICE}, and it must answer ARP for them on {interface}.",
        "arp_ignore=0 (the kernel's default) answers for any address of the host, whatever",
        "device holds it; 1 or more would answer only for addresses of the NIC itself. The kernel",
        "uses the larger of conf.all and conf.<interface>, so both are stated.",
    )
    return [
        Sysctl(sysctl_key("net", "ipv4", "conf", "all", "arp_ignore"), 0, why),
        Sysctl(sysctl_key("net", "ipv4", "conf", interface, "arp_ignore"), 0),
    ]


def _tunnel_sysctls(device: str) -> list[Sysctl]:
    why = (
        f"TUN: requests arrive decapsulated on {device} while the route back to the client is the",
        "NIC, so strict reverse-path filtering (1) drops them all. The kernel uses the larger of",
        f"conf.all and conf.{device}, so loose (2) on {device} alone is enough whatever 'all' says;",
        "conf.all is left alone, so every other interface keeps the host's anti-spoofing.",
    )
    return [Sysctl(sysctl_key("net", "ipv4", "conf", device, "rp_filter"), 2, why)]


def host_state(cluster: Cluster, host: Host, by_host: ByHost | None = None) -> HostState:
    if host.is_director:
        return _director_state(cluster, host)
    if by_host is None:
        by_host = services_by_host(cluster)
    return _real_server_state(cluster, host, by_host.get(host.name, []))


def needs_network(state: HostState) -> bool:
    """Whether the host has state on its NIC (a director's IPv6 VIP, a NAT real server's route,
    an owned NIC's address, a sync daemon), which only the lvsgen-network unit can restore at boot on a host
    whose network manager is not networkd: the early unit runs before the NIC is configured."""
    early = set(state.dummies) | {"lo", TUNNEL_DEVICE, GRE_DEVICE}
    # A sync daemon sends or receives multicast on the NIC: it starts once the NIC is up.
    return bool(state.routes) or bool(state.host.sync_daemons) or any(a.device not in early for a in state.addresses)
