"""Address parsing, memoised: the same few strings are read once per reference otherwise
(20,000 real-server entries name 500 hosts). ipaddress objects are immutable, so sharing
them is safe."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]


@lru_cache(maxsize=65536)
def ip_address(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@lru_cache(maxsize=65536)
def ip_interface(text: str) -> IPInterface:
    return ipaddress.ip_interface(text)


@lru_cache(maxsize=65536)
def text(address: IPAddress) -> str:
    """The address as ipvsadm and iproute2 print it: glibc's inet_ntop, which is RFC 5952
    except that an IPv4-mapped address (::ffff:0:0/96) and an IPv4-compatible one (::/96
    whose seventh 16-bit word is not 0) end in a dotted quad. Python's own form for those changed in 3.13, so it is not
    used for them: the output must not depend on the interpreter."""
    if address.version == 6:
        packed = address.packed
        if packed[:12] == bytes(10) + b"\xff\xff":
            return "::ffff:" + ".".join(str(b) for b in packed[12:])
        if packed[:12] == bytes(12) and packed[12:14] != bytes(2):
            return "::" + ".".join(str(b) for b in packed[12:])
    return address.compressed
