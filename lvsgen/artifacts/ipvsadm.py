"""A director's rules file (etc/lvsgen/ipvsadm.rules): the IPVS table as ``ipvsadm -S -n``
(``ipvsadm-save -n``) prints it; and its thresholds file (etc/lvsgen/ipvs.thresholds).

lvsgen writes the rules file in exactly that form, so that a saved live table and the file
compare byte for byte: that is how setup.sh knows a reload is not needed. Options are printed
in ipvsadm's own order: -s, -p, -M, --pe, -o, -b (flags in the kernel's bit order). The order
of the lines is ipvsadm's own, from lvsgen.order. ``ipvsadm -S`` never prints thresholds
(-x/-y), so they go to a file of their own, which setup.sh checks against
``ipvsadm -L -n --thresholds``.
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

from lvsgen.addresses import text
from lvsgen import procimage
from lvsgen.files import PROC_IMAGE, RULES, THRESHOLDS, File
from lvsgen.model import IPAddress, RealServer, Service
from lvsgen.order import sort_services
from lvsgen.state import HostState


def addr_port(address: IPAddress, port: int | str) -> str:
    """192.0.2.1:80, or [2001:db8::1]:80 for IPv6 (the port may be a list: 443,8443)."""
    if address.version == 6:
        return f"[{text(address)}]:{port}"
    return f"{text(address)}:{port}"


def service_name(svc: Service) -> str:
    """How ipvsadm names the service: -t 192.0.2.1:80, or -f 1 (-f 1 -6 for IPv6)."""
    if svc.fwmark is not None:
        return f"-f {svc.fwmark}" + (" -6" if svc.address.version == 6 else "")
    return f"{svc.protocol.flag} {addr_port(svc.address, svc.port)}"


def service_line(svc: Service) -> str:
    line = f"-A {service_name(svc)} -s {svc.scheduler}"
    if svc.persistence is not None:
        line += f" -p {svc.persistence.timeout}"
        full = svc.address.max_prefixlen
        if svc.persistence.granularity != full:
            if svc.address.version == 4:
                mask = ipaddress.IPv4Network(f"0.0.0.0/{svc.persistence.granularity}").netmask
                line += f" -M {mask}"
            else:
                line += f" -M {svc.persistence.granularity}"
        if svc.persistence.engine is not None:
            line += f" --pe {svc.persistence.engine}"
    # ipvsadm 1.31 prints -o before -b (seen in the VM: "-s sh -p 60 --pe sip -o -b sh-port").
    if svc.one_packet:
        line += " -o"
    if svc.scheduler_flags:
        line += " -b " + ",".join(svc.scheduler_flags)
    return line


def dest_line(svc: Service, rs: RealServer) -> str:
    line = (
        f"-a {service_name(svc)}"
        f" -r {addr_port(rs.address, rs.port)} {svc.forwarding.flag} -w {rs.weight}"
    )
    tunnel = svc.tunnel
    if tunnel is not None:
        line += f" --tun-type {tunnel.kind}"
        if tunnel.kind == "gue":
            line += f" --tun-port {tunnel.port}"
        if tunnel.kind != "ipip":  # ipvsadm -S prints the checksum option of gue and gre, none too
            line += {"none": " --tun-nocsum", "csum": " --tun-csum", "remcsum": " --tun-remcsum"}[tunnel.checksum]
    return line


def rules(services: Sequence[Service]) -> list[str]:
    """Every line of ``ipvsadm -S -n`` for these services, in ipvsadm's order."""
    out: list[str] = []
    for svc in sort_services(services):
        out.append(service_line(svc))
        out.extend(dest_line(svc, rs) for rs in svc.real_servers)
    return out


def threshold_lines(services: Sequence[Service]) -> list[str]:
    """'SERVICE -r SERVER -x UPPER -y LOWER' for each real server with a threshold, in the
    rules file's order. ``ipvsadm -S`` never prints thresholds, so they cannot be in the rules
    file (it would never match the table); setup.sh applies and checks these apart."""
    out: list[str] = []
    for svc in sort_services(services):
        for rs in svc.real_servers:
            if rs.upper_threshold or rs.lower_threshold:
                out.append(
                    f"{service_name(svc)} -r {addr_port(rs.address, rs.port)}"
                    f" -x {rs.upper_threshold} -y {rs.lower_threshold}"
                )
    return out


def files(state: HostState) -> list[File]:
    """A director's rules file (etc/lvsgen/ipvsadm.rules) and, when a real server has a
    connection threshold, its thresholds file; a real server has neither."""
    if not state.host.is_director:
        return []
    out = [File(RULES, "".join(f"{line}\n" for line in rules(state.services)))]
    thresholds = threshold_lines(state.services)
    if thresholds:
        out.append(File(THRESHOLDS, "".join(f"{line}\n" for line in thresholds)))
    return out


def image_files(installed: list[File]) -> list[File]:
    """The image of the rules file among INSTALLED as /proc shows it, when /proc can show it
    all (lvsgen.procimage): for setup.sh, so it stays in the host folder (PROC_IMAGE)."""
    for f in installed:
        if f.path == RULES:
            image = procimage.text(f.text)
            return [] if image is None else [File(PROC_IMAGE, image)]
    return []
