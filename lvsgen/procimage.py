"""The rules file as /proc/net/ip_vs shows it (ipvsadm.proc, in the host folder): what lets the host
engine compare a live table with the rules file by lookups alone.

Reading /proc/net/ip_vs is far cheaper than ``ipvsadm -S -n`` (measured in the VM at 5,000
services: 0.13 s against 3.1 s), but it prints hex addresses, and converting thousands of its
lines in awk cost more than reading them: 1.7 s at 5,000 services for one full pass. This file
gives each line of the rules file the words /proc prints for it, so that the engine matches
live lines against it as text and converts only the lines that differ
(templates/host/ipvs-plan.awk).

The first line is a comment that ends in the MD5 sum of the rules file it was made from; the
engine uses the image only with that very file. Then one line per rules line, in its order:

    KEY <TAB> RULE                  a real server
    KEY <TAB> RULE <TAB> NAME       a service

KEY is the /proc line's words, single-spaced and without the connection counters
(``TCP C6336409:0050 wrr``, ``-> C000020B:0050 Route 1``), except that a persistent service's
timeout is ``@SECONDS``: /proc prints jiffies, and the engine multiplies by the kernel's HZ.
RULE is the rules line; NAME is the service as ipvsadm names it (``-t 198.51.100.10:80``).

Only a table /proc can show in full gets an image: no ``-b``, ``--pe``, firewall marks, tunnel
types other than ipip, or one-packet scheduling on an IPv6 service. Without one, the engine
reads such a table with ``ipvsadm -S -n``, as before. The engine's own converter from /proc
reads every KEY back to its RULE: tests/test_host_lib.py checks that for every golden table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from functools import lru_cache
from typing import Sequence

from lvsgen import saved
from lvsgen.addresses import IPAddress

PROTOCOLS = {"-t": "TCP", "-u": "UDP", "--sctp-service": "SCTP"}
FORWARDING = {"-g": "Route", "-m": "Masq", "-i": "Tunnel"}

# Exactly the forms (and option order) ipvsadm -S prints and /proc shows in full.
_SERVICE = re.compile(r"^-A (-t|-u|--sctp-service) (\S+) -s ([a-z0-9]+)(?: -p ([0-9]+))?(?: -M (\S+))?( -o)?$")
_SERVER = re.compile(r"^-a (-t|-u|--sctp-service) (\S+) -r (\S+) (-g|-m) -w ([0-9]+)$|^-a (-t|-u|--sctp-service) (\S+) -r (\S+) (-i) -w ([0-9]+) --tun-type ipip$")


class NotShowable(ValueError):
    """A rules line /proc/net/ip_vs cannot show in full."""


@lru_cache(maxsize=65536)
def _addr_port(word: str) -> tuple[IPAddress, str]:
    """'192.0.2.1:80' -> (address, 'C0000201:0050'); IPv6 as %pI6 prints it, in brackets.
    Cached: a real server's address and port recur in every service it serves."""
    try:
        address, port = saved.parse_address_port(word)
    except saved.LineError as exc:
        raise NotShowable(word) from exc
    if address.version == 6:
        return address, f"[{address.exploded}]:{port:04X}"  # eight groups of four, lowercase
    return address, f"{int(address):08X}:{port:04X}"


def _service_key(line: str) -> tuple[str, str]:
    """The /proc key of an -A line, and the service's name."""
    m = _SERVICE.match(line)
    if not m:
        raise NotShowable(line)
    flag, where, scheduler, timeout, mask, one_packet = m.groups()
    address, shown = _addr_port(where)
    words = [PROTOCOLS[flag], shown, scheduler]
    if one_packet:
        if address.version == 6:  # the kernel prints no 'ops' for an IPv6 service
            raise NotShowable(line)
        words.append("ops")
    if timeout is not None:
        if address.version == 4:
            try:
                netmask = 0xFFFFFFFF if mask is None else int(ipaddress.IPv4Address(mask))
            except ValueError as exc:
                raise NotShowable(line) from exc
        else:
            # The prefix length, kept in the netmask field; /proc prints ntohl() of it, which on
            # a little-endian kernel puts the length in the top byte (64 -> 40000000).
            if mask is not None and not (mask.isdigit() and int(mask) <= 128):
                raise NotShowable(line)
            plen = 128 if mask is None else int(mask)
            netmask = (plen << 24) & 0xFFFFFFFF
        words += ["persistent", f"@{int(timeout)}", f"{netmask:08X}"]
    elif mask is not None:
        raise NotShowable(line)
    return " ".join(words), f"{flag} {where}"


def _server_key(line: str) -> tuple[str, str]:
    """The /proc key of an -a line (without its service), and the service's name."""
    m = _SERVER.match(line)
    if not m:
        raise NotShowable(line)
    groups = m.groups()
    flag, where, server, forwarding, weight = groups[:5] if groups[0] is not None else groups[5:]
    _, shown = _addr_port(server)
    return f"-> {shown} {FORWARDING[forwarding]} {int(weight)}", f"{flag} {where}"


def image(rules: Sequence[str]) -> list[str] | None:
    """The image's lines after its first (see the module's doc), or None when /proc cannot show
    one of the rules lines in full (the engine then reads the table with ipvsadm -S -n)."""
    out: list[str] = []
    service: str | None = None
    try:
        for line in rules:
            if line.startswith("-A "):
                key, service = _service_key(line)
                out.append(f"{key}\t{line}\t{service}")
            else:
                key, name = _server_key(line)
                if name != service:  # a real server outside its service's block
                    raise NotShowable(line)
                out.append(f"{key}\t{line}")
    except NotShowable:
        return None
    return out


def text(rules_text: str) -> str | None:
    """The image file for a rules file's text, or None (see image)."""
    lines = image(rules_text.splitlines())
    if lines is None:
        return None
    digest = hashlib.md5(rules_text.encode("utf-8"), usedforsecurity=False).hexdigest()
    head = f"# generated by lvsgen: {len(lines)} lines of ipvsadm.rules as /proc/net/ip_vs shows them, for setup.sh; rules md5 {digest}"
    return "".join(f"{line}\n" for line in [head, *lines])
