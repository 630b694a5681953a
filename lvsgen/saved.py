"""Reading a saved IPVS table: the text ``ipvsadm -S -n`` (``ipvsadm-save -n``) prints.

``lvsgen diff`` reads a director's live table with it and ``lvsgen import`` reads the tables it
turns into a cluster file. This module only checks the shape of each line and names what it
adds, the way the host engine does (templates/host/ipvs-plan.awk): a service by the
words after -A up to its options ("-t 192.0.2.1:80", "-f 7 -6"), a real server by its service
and its -r address. What the options mean is the caller's business: a table may hold services
lvsgen did not make, with options it does not offer.

Blank lines and lines that start with '#' are skipped, as the host engine skips them. Every
problem names its line (``FILE:LINE: message``), and all of them are collected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from lvsgen.addresses import IPAddress, ip_address

SERVICE_FLAGS = ("-t", "-u", "--sctp-service")  # tcp, udp, sctp: what ipvsadm -S prints
FWMARK = "-f"
MAX_PROBLEMS = 20  # per file: a file that is not a saved table at all says so in a screenful

_BLANK = re.compile(r"^[ \t]*$")
_WORDS = re.compile(r"[ \t]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_V4 = re.compile(r"^([0-9.]+):([0-9]+)$")
_V6 = re.compile(r"^\[([0-9A-Za-z:.%]+)\]:([0-9]+)$")
_NAME_PORT = re.compile(r"^[A-Za-z0-9.-]+:[A-Za-z0-9-]+$")
_LIST_FORM = ("IP Virtual Server", "Prot LocalAddress", "->", "TCP ", "UDP ", "SCTP ", "FWM ")


class SavedError(Exception):
    """Problems in a saved table: each already rendered as ``FILE:LINE: message``."""

    def __init__(self, messages: list[str]):
        super().__init__(f"{len(messages)} problem(s)")
        self.messages = messages


@dataclass(frozen=True)
class Command:
    """One ipvsadm command line, split: -A/-E/-D name a service, -a/-e/-d also a real server."""

    command: str
    service: str  # "-t 192.0.2.1:80", "-f 7", "-f 7 -6"
    server: str | None  # the -r address of -a/-e/-d lines
    options: tuple[str, ...]  # every word after the names

    @property
    def text(self) -> str:
        """The line with single spaces, as the host engine compares it."""
        words = [self.command, self.service]
        if self.server is not None:
            words += ["-r", self.server]
        return " ".join(words + list(self.options))

    @property
    def option_text(self) -> str:
        return " ".join(self.options)


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, counting blank and comment lines
    command: Command


@dataclass
class Service:
    line: Line
    servers: list[Line] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.line.command.service


@dataclass
class Table:
    source: str  # how messages name the file
    services: list[Service]  # in the order of their -A lines
    line_count: int  # lines in the text, blank and comment lines included

    def by_name(self) -> dict[str, Service]:
        return {svc.name: svc for svc in self.services}

    def text(self) -> str:
        """The text the host engine reads: every line with single spaces, and every blank or
        comment line left empty, so that its line numbers are the file's."""
        out = [""] * self.line_count
        for svc in self.services:
            out[svc.line.number - 1] = svc.line.command.text
            for line in svc.servers:
                out[line.number - 1] = line.command.text
        return "".join(f"{line}\n" for line in out)


class LineError(ValueError):
    """What is wrong with one line."""


def split_command(words: Sequence[str]) -> Command:
    """Split the words of one ipvsadm line (the command first) into its parts.

    Raises LineError for a line whose names are missing or cut short."""
    command = words[0]
    if len(words) < 2:
        raise LineError(f"{command} needs a service (-t, -u or --sctp-service ADDRESS:PORT, or -f MARK): the line is cut short")
    flag = words[1]
    if flag in SERVICE_FLAGS:
        if len(words) < 3:
            raise LineError(f"{flag} needs ADDRESS:PORT: the line is cut short")
        parse_address_port(words[2])
        end = 3
    elif flag == FWMARK:
        if len(words) < 3 or not words[2].isdigit() or not 0 < int(words[2]) < 1 << 32:
            raise LineError(f"-f needs a firewall mark, a number from 1 to {(1 << 32) - 1}")
        end = 4 if len(words) > 3 and words[3] == "-6" else 3
    else:
        raise LineError(f"expected -t, -u, --sctp-service or -f (the service) after {command}, found {json.dumps(flag)}")
    service = " ".join(words[1:end])
    server = None
    if command in ("-a", "-e", "-d"):
        if len(words) <= end or words[end] != "-r":
            raise LineError(f"expected -r ADDRESS:PORT (the real server) after the service {service}")
        if len(words) <= end + 1:
            raise LineError("-r needs ADDRESS:PORT: the line is cut short")
        server = words[end + 1]
        parse_address_port(server)
        end += 2
    return Command(command, service, server, tuple(words[end:]))


def parse_address_port(word: str) -> tuple[IPAddress, int]:
    """192.0.2.1:80 or [2001:db8::1]:80, as ipvsadm -n prints them; the port may be 0."""
    match = _V6.match(word) or _V4.match(word)
    if match is None:
        if _NAME_PORT.match(word) and not word.replace(".", "").replace(":", "").isdigit():
            raise LineError(f"{json.dumps(word)} has names instead of numbers: save the table with 'ipvsadm -S -n' (-n prints addresses and ports as numbers)")
        raise LineError(f"{json.dumps(word)} is not ADDRESS:PORT: write 192.0.2.1:80, or [2001:db8::1]:80 for IPv6")
    text, port = match.group(1), match.group(2)
    try:
        if "%" in text:
            raise ValueError
        address = ip_address(text)
    except ValueError:
        raise LineError(f"{json.dumps(text)} in {json.dumps(word)} is not an IP address") from None
    if (address.version == 6) != word.startswith("["):
        raise LineError(f"{json.dumps(word)}: write an IPv6 address in brackets, [2001:db8::1]:80, and an IPv4 address without them")
    if len(port) > 5 or int(port) > 65535:
        raise LineError(f"port {port} in {json.dumps(word)} is out of range: a port is at most 65535")
    return address, int(port)


def _option_value(options: Sequence[str], name: str) -> str | None:
    for i, word in enumerate(options[:-1]):
        if word == name:
            return options[i + 1]
    return None


def _check_options(command: Command) -> None:
    """What every line of 'ipvsadm -S -n' has: -s on a service, a forwarding method and -w on a
    real server. A line without them is cut short (or was never a saved table)."""
    options = command.options
    if command.command == "-A":
        if _option_value(options, "-s") is None:
            raise LineError("no -s SCHEDULER: ipvsadm -S prints it on every service line; is the line cut short?")
        return
    if not any(word in ("-g", "-m", "-i") for word in options):
        raise LineError("no forwarding method (-g, -m or -i): ipvsadm -S prints one on every real server line; is the line cut short?")
    weight = _option_value(options, "-w")
    if weight is None or not weight.isdigit():
        raise LineError("no -w WEIGHT: ipvsadm -S prints it on every real server line; is the line cut short?")


def read(text: str, source: str) -> Table:
    """Read the text of a saved table; raise SavedError naming every bad line."""
    problems: list[tuple[int, str]] = []
    services: dict[str, Service] = {}
    order: list[Service] = []
    servers: dict[tuple[str, str], int] = {}
    # -a lines of services not yet seen: (line, command); an error once the file is read
    orphans: list[tuple[int, Command]] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw  # a copy with Windows line ends
        if _BLANK.match(line) or line.startswith("#"):
            continue
        bad = _CONTROL.search(line)
        if bad:
            problems.append((number, f"unexpected control character {json.dumps(bad.group())}: is this the text 'ipvsadm -S -n' printed?"))
            continue
        words = _WORDS.split(line.strip(" \t"))
        if words[0] not in ("-A", "-a"):
            problems.append((number, _not_a_rule(line, words[0])))
            continue
        try:
            command = split_command(words)
            _check_options(command)
        except LineError as err:
            problems.append((number, str(err)))
            continue
        if command.command == "-A":
            if command.service in services:
                problems.append((number, f"service {command.service} is already added at line {services[command.service].line.number}: a saved table lists each service once"))
                continue
            svc = Service(Line(number, command))
            services[command.service] = svc
            order.append(svc)
            continue
        assert command.server is not None
        key = (command.service, command.server)
        if key in servers:
            problems.append((number, f"real server {command.server} of service {command.service} is already listed at line {servers[key]}: a saved table lists each real server of a service once"))
            continue
        servers[key] = number
        if command.service not in services:
            orphans.append((number, command))
            continue
        services[command.service].servers.append(Line(number, command))
    for number, command in orphans:
        later = services.get(command.service)
        if later is not None:
            problems.append((number, f"real server {command.server} comes before its service's -A line (line {later.line.number}): ipvsadm -S prints each service's -A line before its real servers"))
        else:
            problems.append((number, f"real server {command.server} of service {command.service}, which no -A line adds: add its -A line before it"))
    if problems:
        raise SavedError(render(source, problems))
    return Table(source, order, len(lines))


def render(source: str, problems: Iterable[tuple[int, str]]) -> list[str]:
    """``FILE:LINE: message`` lines, in line order, at most MAX_PROBLEMS of them."""
    ordered = sorted(problems)
    out = [f"{source}:{number}: {message}" for number, message in ordered[:MAX_PROBLEMS]]
    if len(ordered) > MAX_PROBLEMS:
        out.append(f"{source}: {len(ordered) - MAX_PROBLEMS} more problems not shown; is this a table saved with 'ipvsadm -S -n'?")
    return out


def _not_a_rule(line: str, first: str) -> str:
    if line.lstrip(" \t").startswith(_LIST_FORM):
        return "this looks like 'ipvsadm -L -n' output (the listing); save the table with 'ipvsadm -S -n' instead"
    if first in ("-E", "-D", "-C", "-e", "-d", "-R", "-S", "-L", "-Z"):
        return f"{first} has no place in a saved table: it holds only -A (a service) and -a (a real server) lines, as 'ipvsadm -S -n' prints them"
    if first in ("ipvsadm", "ipvsadm-save", "/sbin/ipvsadm", "/usr/sbin/ipvsadm"):
        return "this is a command, not a saved table line: drop the leading 'ipvsadm'; a saved table holds '-A ...' and '-a ...' lines"
    return "expected a line that starts with -A (a service) or -a (a real server), as 'ipvsadm -S -n' prints them"
