"""Step 3: rules the schema cannot express. Runs on a schema-valid document.

Every problem is collected and tied to a JSON path, in the same format as schema errors.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from lvsgen.addresses import ip_address, ip_interface
from lvsgen.errors import InputError, Problem
from lvsgen.model import port_span, real_server_address
from lvsgen.schema import json_path

DUMMY_DEVICE = "lvs0"  # the dummy device that holds VIPs on DR real servers
TUNNEL_DEVICE = "tunl0"  # the kernel's IPIP fallback device: TUN real servers decapsulate on it
GRE_DEVICE = "gre0"  # the kernel's GRE fallback device: real servers of gre tunnels decapsulate on it


def check(document: dict[str, Any]) -> None:
    problems = sorted(set(_problems(document)))
    if problems:
        raise InputError(problems)


def _problems(doc: dict[str, Any]) -> Iterator[Problem]:
    hosts: dict[str, Any] = doc["hosts"]
    yield from _host_problems(hosts)
    yield from _vip_problems(doc["vips"], hosts)
    yield from _gue_port_problems(doc["vips"])


def _gue_port_problems(vips: dict[str, Any]) -> Iterator[Problem]:
    """A GUE port is a UDP socket for every address of the real server ('ip fou add port P
    gue'): a UDP port the same real server serves cannot be one, or the GUE receiver would
    take that service's packets."""
    served: dict[tuple[str, int], str] = {}  # (host, UDP port it listens on) -> service
    for vname in sorted(vips):
        for index, svc in enumerate(vips[vname]["services"]):
            if svc.get("protocol", "tcp") != "udp":
                continue
            spans = [port_span(p) for p in svc.get("ports", [])]
            for rs in svc["real_servers"]:
                if "host" not in rs:
                    continue
                if "port" in rs and svc["forwarding"] == "nat":
                    ports: list[int] = [rs["port"]]
                elif "port" in svc:
                    ports = [svc["port"]]
                else:
                    ports = [p for first, last in spans for p in range(first, min(last, 65535) + 1)]
                for port in ports:
                    served.setdefault((rs["host"], port), f"{vname} service {index}")
    for vname in sorted(vips):
        for index, svc in enumerate(vips[vname]["services"]):
            tunnel = svc.get("tunnel", {})
            if svc["forwarding"] != "tun" or tunnel.get("type") != "gue" or "port" not in tunnel:
                continue
            for rs in svc["real_servers"]:
                where = served.get((rs.get("host", ""), tunnel["port"]))
                if where is not None:
                    yield _p(["vips", vname, "services", index, "tunnel", "port"], f"real server {json.dumps(rs['host'])} serves UDP port {tunnel['port']} ({where}), and a GUE receiver on that port would take its packets: pick another GUE port")
                    break


def _p(path: list[Any], message: str) -> Problem:
    return Problem(json_path(path), message)


def _host_problems(hosts: dict[str, Any]) -> Iterator[Problem]:
    seen_addresses: dict[Any, str] = {}
    seen_hostnames: dict[str, str] = {}
    for name in sorted(hosts):
        host = hosts[name]
        base = ["hosts", name]
        address = ip_interface(host["address"])
        if address.ip in seen_addresses:
            yield _p(base + ["address"], f"{address.ip} is already the address of host {json.dumps(seen_addresses[address.ip])}; every host needs its own address")
        seen_addresses.setdefault(address.ip, name)
        hostname = host.get("hostname", name)
        if hostname in seen_hostnames:
            yield _p(base + (["hostname"] if "hostname" in host else []), f"hostname {json.dumps(hostname)} is already used by host {json.dumps(seen_hostnames[hostname])}; setup.sh tells hosts apart by hostname")
        seen_hostnames.setdefault(hostname, name)
        if address.network.prefixlen == address.max_prefixlen:
            yield _p(base + ["address"], f"{address} has a /{address.max_prefixlen} prefix: give the prefix length of the host's network, like 192.0.2.10/24, so lvsgen can check which hosts share it")
        if host["role"] == "real-server":
            for key in ("nat_interface", "nat_address", "nat_forwarding", "ipvs_sysctls", "ipvs_timeouts", "sync_daemons", "conn_tab_bits", "owns_ipvs_table", "drain_timeout"):
                if key in host:
                    yield _p(base + [key], f"{json.dumps(key)} applies to directors only; remove it or set \"role\": \"director\"")
        else:
            if "vip_device" in host:
                yield _p(base + ["vip_device"], f"\"vip_device\" applies to real servers only; a director holds its IPv4 VIPs on {DUMMY_DEVICE} and its IPv6 VIPs on \"interface\"; remove it")
            if host.get("ipvs_sysctls", {}).get("backup_only") and not any(d["state"] == "backup" for d in host.get("sync_daemons", [])):
                yield _p(base + ["ipvs_sysctls", "backup_only"], "backup_only acts only while a backup sync daemon runs, and this director has none: add {\"state\": \"backup\"} to \"sync_daemons\", or remove backup_only")
            states: dict[str, int] = {}
            for index, daemon in enumerate(host.get("sync_daemons", [])):
                if daemon["state"] == "backup" and daemon.get("maxlen", 1024) < 1024:
                    # Seen in the VM: the kernel raises it to 1024, so the daemon would never
                    # run as described.
                    yield _p(base + ["sync_daemons", index, "maxlen"], f"a backup sync daemon receives with at least 1024 bytes (the kernel raises {daemon['maxlen']} to 1024); give 1024 or more, or leave maxlen out")
                if daemon["state"] in states:
                    yield _p(base + ["sync_daemons", index, "state"], f"a second {daemon['state']} sync daemon (the first is at index {states[daemon['state']]}): the kernel runs one of each; keep one")
                states.setdefault(daemon["state"], index)
            if "nat_interface" in host and "nat_address" not in host:
                yield _p(base + ["nat_interface"], "\"nat_interface\" needs \"nat_address\": give the director's address on that interface, like 198.51.100.1/24")
            if "nat_address" in host:
                nat = ip_interface(host["nat_address"])
                if nat.network.prefixlen == nat.max_prefixlen:
                    yield _p(base + ["nat_address"], f"{nat} has a /{nat.max_prefixlen} prefix: give the prefix length of the real servers' network")
                if nat.ip in seen_addresses:
                    yield _p(base + ["nat_address"], f"{nat.ip} is already the address of host {json.dumps(seen_addresses[nat.ip])}")
                seen_addresses.setdefault(nat.ip, name)
        own = host.get("own_interface")
        if own is not None:
            opath = base + ["own_interface"]
            if "network_file" in host:
                yield _p(opath, f"\"own_interface\" and \"network_file\" both configure {host['interface']}: keep \"network_file\" when the host has its own .network file (lvsgen then adds a drop-in), or remove it to let lvsgen own the interface")
            if "gateway" not in own and own.get("dhcp", "no") == "no":
                yield _p(opath, f"lvsgen would write {host['interface']}'s whole .network file, and it would give the host no default route: add \"gateway\" (its router's address on {address.network}) or \"dhcp\"")
            if "gateway" in own:
                gateway = ip_address(own["gateway"])
                if gateway not in address.network:
                    yield _p(opath + ["gateway"], f"{gateway} is not in the host's network {address.network}; give a gateway on that network")
                elif gateway == address.ip:
                    yield _p(opath + ["gateway"], f"{gateway} is the host's own address; give its router's address")
        if host["interface"] in (DUMMY_DEVICE, TUNNEL_DEVICE, GRE_DEVICE, "lo"):
            yield _p(base + ["interface"], f"{json.dumps(host['interface'])} cannot face the VIP network: lvsgen uses it to hold VIPs; name the host's network interface, like eth0")


def _networks(host: dict[str, Any]) -> list[Any]:
    nets = [ip_interface(host["address"]).network]
    if "nat_address" in host:
        nets.append(ip_interface(host["nat_address"]).network)
    return nets


def _vip_problems(vips: dict[str, Any], hosts: dict[str, Any]) -> Iterator[Problem]:
    host_addresses = {ip_interface(h["address"]).ip: n for n, h in hosts.items()}
    for n, h in hosts.items():
        if "nat_address" in h:
            host_addresses[ip_interface(h["nat_address"]).ip] = n
    vip_owner: dict[Any, str] = {}
    service_owner: dict[tuple[Any, ...], str] = {}
    marked: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}  # (VIP, protocol, first, last) -> service, path
    mark_owner: dict[tuple[Any, ...], str] = {}  # (director, family, mark) -> service
    for vname in sorted(vips):
        vip = vips[vname]
        base = ["vips", vname]
        address = ip_address(vip["address"])
        if address in vip_owner:
            yield _p(base + ["address"], f"{address} is already VIP {json.dumps(vip_owner[address])}; put all services of one VIP under one entry")
        vip_owner.setdefault(address, vname)
        if address in host_addresses:
            yield _p(base + ["address"], f"{address} is the address of host {json.dumps(host_addresses[address])}; a VIP must be an address of its own")
        director_name = vip["director"]
        director = hosts.get(director_name)
        if director is None:
            yield _p(base + ["director"], f"unknown host {json.dumps(director_name)}; name one of the directors in $.hosts ({_names(hosts, 'director')})")
        elif director["role"] != "director":
            yield _p(base + ["director"], f"host {json.dumps(director_name)} is a real server; name a director ({_names(hosts, 'director')}) or set its role to \"director\"")
            director = None
        elif ip_interface(director["address"]).version != address.version:
            yield _p(base + ["address"], f"{address} is IPv{address.version} but director {json.dumps(director_name)} has an IPv{ip_interface(director['address']).version} address; the director needs an address of the VIP's family")
            director = None
        for index, svc in enumerate(vip["services"]):
            spath = base + ["services", index]
            protocol = svc.get("protocol", "tcp")
            where = f"{vname} service {index}"
            if "fwmark" in svc:
                yield from _fwmark_problems(spath, svc, where, address, director_name, marked, mark_owner)
            else:
                key = (address, protocol, svc["port"])
                if key in service_owner:
                    yield _p(spath, f"{protocol} {address} port {svc['port']} is already defined ({service_owner[key]}); each VIP, protocol and port may appear once")
                service_owner.setdefault(key, where)
            yield from _service_problems(spath, vip, svc, address, director_name, director, hosts)
    # A port that a firewall-mark service marks cannot also be a service of its own: the
    # kernel looks a packet's mark up first, and the plain service would never see a packet.
    for (address, protocol, port), where in sorted(service_owner.items(), key=lambda kv: kv[1]):
        for (m_address, m_protocol, first, last), (m_where, m_path) in marked.items():
            if (m_address, m_protocol) == (address, protocol) and first <= port <= last:
                yield _p(m_path, f"{protocol} {address} port {port} is also a service of its own ({where}), which would get no packet: the director marks them for this firewall-mark service, and IPVS looks marks up first; take the port out of one of them")


def _fwmark_problems(
    spath: list[Any],
    svc: dict[str, Any],
    where: str,
    address: Any,
    director_name: str,
    marked: dict[tuple[Any, ...], tuple[str, list[Any]]],
    mark_owner: dict[tuple[Any, ...], str],
) -> Iterator[Problem]:
    mark = svc["fwmark"]
    if "port" in svc:
        yield _p(spath + ["port"], "a firewall-mark service has no \"port\": it takes the ports in \"ports\"; remove \"port\"")
    key = (director_name, address.version, mark)
    if key in mark_owner:
        yield _p(spath + ["fwmark"], f"mark {mark} is already an IPv{address.version} firewall-mark service of director {json.dumps(director_name)} ({mark_owner[key]}); give each its own mark")
    mark_owner.setdefault(key, where)
    protocol = svc.get("protocol", "tcp")
    for index, item in enumerate(svc["ports"]):
        ppath = spath + ["ports", index]
        first, last = port_span(item)
        if last > 65535 or first > last:
            yield _p(ppath, f"{json.dumps(item)} is not a range of ports: give \"FIRST-LAST\" with FIRST <= LAST <= 65535")
            continue
        for (m_address, m_protocol, m_first, m_last), (m_where, _) in marked.items():
            if (m_address, m_protocol) == (address, protocol) and first <= m_last and m_first <= last:
                other = "another item of this list" if m_where == where else f"the firewall-mark service {m_where}"
                what = f"port {item}" if first == last else f"ports {item}"
                yield _p(ppath, f"{protocol} {address} {what} overlaps {other}: a port of a VIP can carry one mark only; list each port once")
                break
        marked.setdefault((address, protocol, first, last), (where, ppath))


def _names(hosts: dict[str, Any], role: str) -> str:
    names = sorted(n for n, h in hosts.items() if h["role"] == role)
    return ", ".join(names) if names else f"none defined: add a host with \"role\": \"{role}\""


def _service_problems(
    spath: list[Any],
    vip: dict[str, Any],
    svc: dict[str, Any],
    vip_address: Any,
    director_name: str,
    director: dict[str, Any] | None,
    hosts: dict[str, Any],
) -> Iterator[Problem]:
    forwarding = svc["forwarding"]
    persistence = svc.get("persistence")
    if persistence and persistence.get("granularity", 0) > vip_address.max_prefixlen:
        yield _p(spath + ["persistence", "granularity"], f"an IPv{vip_address.version} prefix length is at most {vip_address.max_prefixlen}")
    scheduler = svc.get("scheduler", "wlc")
    for index, flag in enumerate(svc.get("scheduler_flags", [])):
        family = flag.split("-", 1)[0]
        if family != scheduler:
            yield _p(spath + ["scheduler_flags", index], f"{json.dumps(flag)} is a flag of the {family} scheduler, and this service uses {json.dumps(scheduler)}: remove the flag, or set \"scheduler\": \"{family}\"")
    protocol = svc.get("protocol", "tcp")
    if svc.get("one_packet") and protocol != "udp":
        yield _p(spath + ["one_packet"], f"one-packet scheduling is for UDP services only (the kernel refuses it for {protocol}); remove \"one_packet\" or use \"protocol\": \"udp\"")
    if persistence and "engine" in persistence and protocol != "udp":
        yield _p(spath + ["persistence", "engine"], f"the {persistence['engine']} persistence engine reads SIP messages over UDP and ignores {protocol} packets; remove \"engine\" or use \"protocol\": \"udp\"")
    tunnel = svc.get("tunnel")
    if tunnel is not None:
        kind = tunnel.get("type", "ipip")
        if forwarding != "tun":
            yield _p(spath + ["tunnel"], f"\"tunnel\" is for tun services, and this one is {forwarding}; remove it or use \"forwarding\": \"tun\"")
        elif kind == "gue" and "port" not in tunnel:
            yield _p(spath + ["tunnel"], "a gue tunnel needs \"port\": the UDP port the real servers receive GUE on, like 6080")
        elif kind != "gue" and "port" in tunnel:
            yield _p(spath + ["tunnel", "port"], f"\"port\" is for gue tunnels; {'an' if kind == 'ipip' else 'a'} {kind} tunnel has no port: remove it")
        if kind == "ipip" and tunnel.get("checksum", "none") != "none":
            yield _p(spath + ["tunnel", "checksum"], "ipip has no checksum option; remove \"checksum\", or use gue or gre")
        elif kind == "gre" and tunnel.get("checksum", "none") != "none":
            # Seen in the VM: ip_tunnel_rcv drops a packet whose checksum flag differs from the
            # tunnel's, and the fallback device gre0 has none (rx crc errors).
            yield _p(spath + ["tunnel", "checksum"], "the real servers decapsulate GRE on the kernel's fallback device gre0, which drops GRE packets that carry a checksum (as CRC errors); use \"checksum\": \"none\" with gre, or gue for a checksummed tunnel")
    if forwarding == "tun" and vip_address.version == 6:
        yield _p(spath + ["forwarding"], "tun is supported for IPv4 VIPs only (lvsgen configures IPIP on tunl0); use dr, or an IPv4 VIP")
    seen: dict[tuple[Any, int], int] = {}
    for index, rs in enumerate(svc["real_servers"]):
        rpath = spath + ["real_servers", index]
        if "host" in rs:
            target = hosts.get(rs["host"])
            if target is None:
                yield _p(rpath + ["host"], f"unknown host {json.dumps(rs['host'])}; name one of the real servers in $.hosts ({_names(hosts, 'real-server')}), or give \"address\" for a machine lvsgen does not manage")
                continue
            if rs["host"] == director_name and not rs.get("localnode", False):
                yield _p(rpath + ["host"], f"{json.dumps(rs['host'])} is this service's director; a director serving its own VIP (LVS localnode) must be asked for with \"localnode\": true")
            elif target["role"] == "director" and rs["host"] != director_name:
                yield _p(rpath + ["host"], f"host {json.dumps(rs['host'])} is a director of other VIPs; real servers must have \"role\": \"real-server\"")
            elif rs.get("localnode") and rs["host"] != director_name:
                yield _p(rpath + ["localnode"], f"\"localnode\" is only for the service's own director ({json.dumps(director_name)}); remove it")
        elif rs.get("localnode"):
            yield _p(rpath + ["localnode"], "\"localnode\" needs \"host\" naming the director; remove it")
        if "lower_threshold" in rs and not rs.get("upper_threshold"):
            yield _p(rpath + ["lower_threshold"], "lower_threshold needs upper_threshold: a real server becomes overloaded at the upper one and takes connections again below the lower one; add upper_threshold or remove lower_threshold")
        elif rs.get("lower_threshold", 0) > rs.get("upper_threshold", 0):
            yield _p(rpath + ["lower_threshold"], f"lower_threshold {rs['lower_threshold']} is above upper_threshold {rs['upper_threshold']}: the real server would never take connections again; make it smaller")
        address = real_server_address(rs, hosts)
        if "address" in rs and director is not None and address in {ip_interface(director["address"]).ip}:
            yield _p(rpath + ["address"], f"{address} is the director's own address; write {{\"host\": {json.dumps(director_name)}, \"localnode\": true}} to serve from the director")
        if address.version != vip_address.version:
            yield _p(rpath, f"real server {address} is IPv{address.version} but the VIP {vip_address} is IPv{vip_address.version}; IPVS forwards within one family")
            continue
        if forwarding == "nat" and "host" in rs and "gateway" in hosts[rs["host"]].get("own_interface", {}):
            yield _p(["hosts", rs["host"], "own_interface", "gateway"], f"host {json.dumps(rs['host'])} is a nat real server of {json.dumps(director_name)}: its default route must be the director, which lvsgen sets; remove \"gateway\"")
        if "port" in rs and forwarding != "nat" and "fwmark" in svc:
            yield _p(rpath + ["port"], f"under {forwarding} a real server of a firewall-mark service gets each packet on the port it was sent to; remove \"port\" or use nat")
        elif "port" in rs and forwarding != "nat" and rs["port"] != svc["port"]:
            yield _p(rpath + ["port"], f"port {rs['port']} differs from the service port {svc['port']}: under {forwarding} the kernel ignores it and uses {svc['port']}; remove \"port\" or use nat")
        port = rs.get("port", svc.get("port", 0)) if forwarding == "nat" else svc.get("port", 0)
        if (address, port) in seen:
            yield _p(rpath, f"real server {address} port {port} is already listed at index {seen[(address, port)]} of this service; list each real server once")
        seen.setdefault((address, port), index)
        if director is None or rs.get("localnode"):
            continue
        nets = _networks(director)
        if forwarding == "dr" and not any(address in net for net in nets[:1]):
            yield _p(rpath, f"real server {address} is not on director {json.dumps(director_name)}'s network {nets[0]}: direct routing needs the director and its real servers on one L2 segment; move it onto that network or use tun")
        if forwarding == "nat" and not any(address in net for net in nets):
            yield _p(rpath, f"real server {address} is not on a network of director {json.dumps(director_name)} ({', '.join(map(str, nets))}): under nat the real server's default route must point at the director; give the director \"nat_address\" on the real servers' network")
