"""ipvsadm's listing order, reproduced exactly (see lvsgen.artifacts.ipvsadm for why it matters).

- services are sorted with ``ipvs_cmp_services``: fwmark (0 for a service that has none, so
  firewall-mark services come last, by mark, IPv4 before IPv6), address family, protocol
  number, address, port; real servers of a service with ``ipvs_cmp_dests``: address, then port;
- addresses are compared 32 bits at a time as ``ntohl(a) - ntohl(b)`` stored in an ``int``:
  the difference wraps, so 192.0.2.1 sorts *before* 10.0.0.1 (the difference is above 2**31);
- so when one director's VIPs span more than half of the IPv4 space (10.0.0.1, 100.0.0.1 and
  192.0.2.1, say) the comparison has a cycle, and ipvsadm's order then depends on the order in
  which the kernel hands it the services, which depends on a per-boot hash. No generator can
  predict that, so setup.sh compares the live table and the file as sorted lines: every line
  names its service, so equal sorted lines mean equal tables. For every other table this
  order is ipvsadm's exactly, and the file compares byte for byte.

The marks are compared the same wrapping way.

The functions take any objects with the attributes used (``address``, ``port``, ``protocol``,
and for services ``fwmark``, None for none).
"""

from __future__ import annotations

from functools import cmp_to_key
from typing import Any, Sequence, TypeVar

T = TypeVar("T")

_AF_INET, _AF_INET6 = 2, 10


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _cmp_addr(a: Any, b: Any) -> int:
    wa, wb = a.packed, b.packed
    for i in range(0, len(wa), 4):
        r = _int32(int.from_bytes(wa[i:i + 4], "big") - int.from_bytes(wb[i:i + 4], "big"))
        if r:
            return r
    return 0


def _family(address: Any) -> int:
    return _AF_INET6 if address.version == 6 else _AF_INET


def _mark(service: Any) -> int:
    return getattr(service, "fwmark", None) or 0


def cmp_services(a: Any, b: Any) -> int:
    return (
        _int32(_mark(a) - _mark(b))
        or _family(a.address) - _family(b.address)
        or a.protocol.number - b.protocol.number
        or _cmp_addr(a.address, b.address)
        or a.port - b.port
    )


def cmp_dests(a: Any, b: Any) -> int:
    return _cmp_addr(a.address, b.address) or a.port - b.port


def _no_wrap(addresses: Sequence[Any]) -> bool:
    """True when no 32-bit word differs by 2**31 or more between any two addresses of one
    family: then ipvsadm's wrapping comparison is the plain numeric order."""
    for version in (4, 6):
        words = [a.packed for a in addresses if a.version == version]
        if not words:
            continue
        for i in range(0, len(words[0]), 4):
            column = [int.from_bytes(w[i:i + 4], "big") for w in words]
            if max(column) - min(column) >= 1 << 31:
                return False
    return True


def sort_services(services: Sequence[T]) -> tuple[T, ...]:
    marks = [_mark(s) for s in services]
    if _no_wrap([s.address for s in services]) and (not marks or max(marks) - min(marks) < 1 << 31):  # type: ignore[attr-defined]
        return tuple(sorted(services, key=lambda s: (_mark(s), _family(s.address), s.protocol.number, s.address.packed, s.port)))  # type: ignore[attr-defined]
    return tuple(sorted(services, key=cmp_to_key(cmp_services)))


def sort_dests(dests: Sequence[T]) -> tuple[T, ...]:
    if _no_wrap([d.address for d in dests]):  # type: ignore[attr-defined]
        return tuple(sorted(dests, key=lambda d: (d.address.packed, d.port)))  # type: ignore[attr-defined]
    return tuple(sorted(dests, key=cmp_to_key(cmp_dests)))
