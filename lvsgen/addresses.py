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
    """The address as ipvsadm and iproute2 print it (RFC 5952 for IPv6)."""
    return address.compressed
