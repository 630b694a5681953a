"""Step 4: the typed, immutable model of a cluster.

Built only from a document that passed the schema and the semantic checks. Every default is
taken from the schema's ``default`` keywords (the one place defaults live) or derived here.
Collections are tuples, sorted here, so every later step sees one canonical order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

from lvsgen.addresses import IPAddress, IPInterface, ip_address, ip_interface
from lvsgen.order import sort_dests, sort_services
from lvsgen.schema import load_schema



class Role(Enum):
    DIRECTOR = "director"
    REAL_SERVER = "real-server"


class Protocol(Enum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"

    @property
    def flag(self) -> str:
        """The ipvsadm service-type option, as ipvsadm -S prints it."""
        return {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[self.value]

    @property
    def number(self) -> int:
        """IP protocol number: ipvsadm sorts services by it."""
        return {"tcp": 6, "udp": 17, "sctp": 132}[self.value]


class Forwarding(Enum):
    DR = "dr"
    NAT = "nat"
    TUN = "tun"

    @property
    def flag(self) -> str:
        return {"dr": "-g", "nat": "-m", "tun": "-i"}[self.value]


class VipDevice(Enum):
    DUMMY = "dummy"
    LO = "lo"


@dataclass(frozen=True)
class OwnInterface:
    """lvsgen writes the NIC's whole .network file (own_interface in the cluster file)."""

    gateway: IPAddress | None
    dns: tuple[IPAddress, ...]
    dhcp: str  # networkd DHCP=: no, yes, ipv4, ipv6


@dataclass(frozen=True)
class SyncDaemon:
    state: str  # "master" or "backup"
    interface: str
    syncid: int
    maxlen: int | None  # None: the kernel picks it from the MTU


@dataclass(frozen=True)
class Host:
    name: str
    role: Role
    hostname: str
    interface: str
    address: IPInterface
    network_file: str | None
    own_interface: OwnInterface | None  # None: the NIC and its address are the host's own
    vip_device: VipDevice
    nat_interface: str | None
    nat_address: IPInterface | None
    ipvs_sysctls: tuple[tuple[str, int], ...]
    nat_forwarding: str  # directors: "lvs-only" (lvsgen's forward policy) or "host"
    owns_ipvs_table: bool  # directors: every undescribed IPVS service is removed
    drain_timeout: int  # directors: seconds to wait for a leaving real server's connections
    # directors: ipvsadm --set tcp tcpfin udp, in seconds; 0 keeps the kernel's value
    ipvs_timeouts: tuple[int, int, int] = (0, 0, 0)
    sync_daemons: tuple[SyncDaemon, ...] = ()  # directors: ipvsadm --start-daemon
    conn_tab_bits: int | None = None  # directors: the ip_vs module parameter

    @property
    def is_director(self) -> bool:
        return self.role is Role.DIRECTOR


@dataclass(frozen=True)
class RealServer:
    address: IPAddress
    port: int
    weight: int
    host: str | None  # None: a machine lvsgen does not manage
    upper_threshold: int = 0  # ipvsadm -x; 0: no limit
    lower_threshold: int = 0  # ipvsadm -y; 0: the kernel's three quarters of the upper one


@dataclass(frozen=True)
class Persistence:
    timeout: int
    granularity: int  # prefix length; 32 (IPv4) or 128 (IPv6) means one client per address
    engine: str | None = None  # ipvsadm --pe: "sip"


@dataclass(frozen=True)
class Tunnel:
    """How a tun service encapsulates (ipvsadm --tun-type)."""

    kind: str  # "ipip", "gue", "gre"
    port: int | None  # gue: the real servers' GUE port
    checksum: str  # "none", "csum", "remcsum"


@dataclass(frozen=True)
class Service:
    vip: str  # the VIP's name
    address: IPAddress
    protocol: Protocol
    port: int
    scheduler: str
    forwarding: Forwarding
    persistence: Persistence | None
    real_servers: tuple[RealServer, ...]
    # ipvsadm -b, in the kernel's bit order (fallback, then port), as ipvsadm -S prints them
    scheduler_flags: tuple[str, ...] = ()
    one_packet: bool = False  # ipvsadm -o
    tunnel: Tunnel | None = None  # tun services only
    # A firewall-mark service (ipvsadm -f): its mark, and the (first, last) port ranges of
    # 'protocol' to the VIP that the director marks; port is then 0.
    fwmark: int | None = None
    ports: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Vip:
    name: str
    address: IPAddress
    director: str
    services: tuple[Service, ...]


@dataclass(frozen=True)
class Cluster:
    name: str
    source: str  # the input file's name, for headers
    hosts: tuple[Host, ...]
    vips: tuple[Vip, ...]
    # Indexes, made once: a build of 5,500 hosts looked each host and each director's VIPs up
    # by scanning every host and VIP, which grew with the square of the cluster.
    _by_name: dict[str, Host] = field(init=False, repr=False, compare=False, hash=False)
    _by_director: dict[str, tuple[Vip, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_director: dict[str, list[Vip]] = {}
        for vip in self.vips:
            by_director.setdefault(vip.director, []).append(vip)
        object.__setattr__(self, "_by_name", {host.name: host for host in self.hosts})
        object.__setattr__(self, "_by_director", {name: tuple(vips) for name, vips in by_director.items()})

    def host(self, name: str) -> Host:
        return self._by_name[name]

    def vips_of(self, director: str) -> tuple[Vip, ...]:
        """The VIPs a director holds, in the file's order."""
        return self._by_director.get(director, ())


@lru_cache(maxsize=None)
def schema_default(definition: str, prop: str) -> Any:
    """The ``default`` the schema gives for ``$defs.<definition>.properties.<prop>``."""
    return load_schema()["$defs"][definition]["properties"][prop]["default"]


def _host(name: str, raw: dict[str, Any]) -> Host:
    role = Role(raw["role"])
    sysctls: dict[str, int] = {}
    if role is Role.DIRECTOR:
        sysctls = {**schema_default("host", "ipvs_sysctls"), **raw.get("ipvs_sysctls", {})}
    nat_address = raw.get("nat_address")
    return Host(
        name=name,
        role=role,
        hostname=raw.get("hostname", name),
        interface=raw["interface"],
        address=ip_interface(raw["address"]),
        network_file=raw.get("network_file"),
        own_interface=_own_interface(raw.get("own_interface")),
        vip_device=VipDevice(raw.get("vip_device", schema_default("host", "vip_device"))),
        nat_interface=raw.get("nat_interface", raw["interface"] if nat_address else None),
        nat_address=ip_interface(nat_address) if nat_address else None,
        ipvs_sysctls=tuple(sorted(sysctls.items())),
        nat_forwarding=raw.get("nat_forwarding", schema_default("host", "nat_forwarding")),
        owns_ipvs_table=raw.get("owns_ipvs_table", schema_default("host", "owns_ipvs_table")),
        drain_timeout=raw.get("drain_timeout", schema_default("host", "drain_timeout")),
        ipvs_timeouts=_timeouts(raw.get("ipvs_timeouts", {})),
        conn_tab_bits=raw.get("conn_tab_bits"),
        sync_daemons=tuple(
            SyncDaemon(d["state"], d.get("interface", raw["interface"]), d.get("syncid", 0), d.get("maxlen"))
            for d in sorted(raw.get("sync_daemons", []), key=lambda d: d["state"] != "master")
        ),
    )


def _timeouts(raw: dict[str, int]) -> tuple[int, int, int]:
    return (raw.get("tcp", 0), raw.get("tcpfin", 0), raw.get("udp", 0))


def _own_interface(raw: dict[str, Any] | None) -> OwnInterface | None:
    if raw is None:
        return None
    gateway = raw.get("gateway")
    return OwnInterface(
        gateway=ip_address(gateway) if gateway else None,
        dns=tuple(ip_address(a) for a in raw.get("dns", [])),
        dhcp=raw.get("dhcp", schema_default("own_interface", "dhcp")),
    )


def real_server_address(raw: dict[str, Any], hosts: dict[str, Any]) -> IPAddress:
    """The address a real-server entry stands for: its own, or its host's."""
    if "host" in raw:
        return ip_interface(hosts[raw["host"]]["address"]).ip
    return ip_address(raw["address"])


# The scheduler flags by kernel bit: IP_VS_SVC_F_SCHED1 is the fallback, SCHED2 the port.
_FLAG_BITS = ("sh-fallback", "mh-fallback", "sh-port", "mh-port")


def port_span(item: int | str) -> tuple[int, int]:
    """One item of a fwmark service's "ports" (80, or "8000-8099") as (first, last)."""
    if isinstance(item, int):
        return item, item
    first, last = item.split("-", 1)
    return int(first), int(last)


def port_ranges(raw: list[int | str]) -> tuple[tuple[int, int], ...]:
    """A fwmark service's "ports" as sorted (first, last) ranges, overlaps and neighbours merged."""
    spans = sorted(port_span(p) for p in raw)
    out: list[tuple[int, int]] = []
    for first, last in spans:
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return tuple(out)


def _service(vip: str, address: IPAddress, raw: dict[str, Any], hosts: dict[str, Any]) -> Service:
    # A firewall-mark service has no port: ipvsadm shows its real servers with port 0 (each
    # packet keeps its own), unless a NAT real server names one port to send them all to.
    port = raw.get("port", 0)
    forwarding = Forwarding(raw["forwarding"])
    real_servers = tuple(
        RealServer(
            address=real_server_address(rs, hosts),
            # DR and TUN cannot remap ports: the kernel uses the service port.
            port=rs.get("port", port) if forwarding is Forwarding.NAT else port,
            weight=rs.get("weight", schema_default("real_server", "weight")),
            host=rs.get("host"),
            upper_threshold=rs.get("upper_threshold", 0),
            lower_threshold=rs.get("lower_threshold", 0),
        )
        for rs in raw["real_servers"]
    )
    persistence = None
    if "persistence" in raw:
        full = address.max_prefixlen
        persistence = Persistence(
            raw["persistence"]["timeout"], raw["persistence"].get("granularity", full), raw["persistence"].get("engine")
        )
    return Service(
        vip=vip,
        address=address,
        protocol=Protocol(raw.get("protocol", schema_default("service", "protocol"))),
        port=port,
        scheduler=raw.get("scheduler", schema_default("service", "scheduler")),
        forwarding=forwarding,
        persistence=persistence,
        real_servers=sort_dests(real_servers),
        scheduler_flags=tuple(sorted(raw.get("scheduler_flags", []), key=_FLAG_BITS.index)),
        one_packet=raw.get("one_packet", False),
        tunnel=_tunnel(raw.get("tunnel", {})) if forwarding is Forwarding.TUN else None,
        fwmark=raw.get("fwmark"),
        ports=port_ranges(raw["ports"]) if "fwmark" in raw else (),
    )


def _tunnel(raw: dict[str, Any]) -> Tunnel:
    return Tunnel(raw.get("type", "ipip"), raw.get("port"), raw.get("checksum", "none"))


def build(document: dict[str, Any], source: str) -> Cluster:
    """Turn a validated document into the model."""
    hosts = document["hosts"]
    vips = []
    for name in sorted(document["vips"]):
        raw = document["vips"][name]
        address = ip_address(raw["address"])
        services = tuple(_service(name, address, svc, hosts) for svc in raw["services"])
        vips.append(Vip(name, address, raw["director"], sort_services(services)))
    return Cluster(
        name=document["cluster"],
        source=source,
        hosts=tuple(_host(name, hosts[name]) for name in sorted(hosts)),
        vips=tuple(vips),
    )
