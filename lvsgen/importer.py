"""``lvsgen import``: saved IPVS tables in, a cluster file out.

Each input is one director's table as ``ipvsadm -S -n`` printed it. The director's name is the
file's name up to its first dot (``lb1.rules`` → ``lb1``), or given as ``NAME=PATH``
(``lb1=-`` reads standard input). A saved table does not say which interface and address the
director has, and a cluster file needs them (setup.sh puts the address on the interface, and
the checks need the director's network), so each director is given with
``--director NAME=ADDRESS/PREFIX[@INTERFACE]`` (interface eth0 when left out), and a NAT
director's address on its real servers' network with ``--nat NAME=ADDRESS/PREFIX[@INTERFACE]``.

What the file gets:
- one host per director (role, interface, address, and the NAT address if given);
- one VIP per service address, named after it (``vip-192-0-2-100``), held by its director;
- per service: protocol, port, scheduler, forwarding, persistence;
- real servers as bare addresses (lvsgen does not manage them until you give them a host
  entry), with weight and, under NAT, a port that differs from the service's; a real server at
  the director's own address becomes ``{"host": DIRECTOR, "localnode": true}``.

A firewall-mark service is an error too: the table does not say which packets carry its mark,
so it must be written by hand. Anything a cluster file cannot say (one-packet scheduling, scheduler
flags, persistence engines, thresholds, tunnel types other than ipip, a service without real
servers, one forwarding method per real server) is an error that names its line, and so is any
line the reader (lvsgen.saved) refuses. The document then goes through the same schema and
semantic checks as any cluster file, with each problem traced back to the line or option it
came from, and is built: each director's rules file must give back its saved table, line for
line. Only then is the file written, in one rename.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsgen import model, plan, saved, schema, semantic
from lvsgen.files import RULES
from lvsgen.addresses import IPAddress, ip_interface, text
from lvsgen.errors import InputError, Problem

DEFAULT_INTERFACE = "eth0"
DEFAULT_NAME = "imported"
_PERSISTENCE_DEFAULT = 300  # ipvsadm's timeout for a bare -p
_FORWARDING = {"-g": "dr", "-m": "nat", "-i": "tun"}
_PROTOCOL = {"-t": "tcp", "-u": "udp", "--sctp-service": "sctp"}
_NOT_EXPRESSIBLE = "; a cluster file cannot describe it: leave this service out of the import (delete its lines) and set \"owns_ipvs_table\": false on the director, so that setup.sh leaves it alone"
_SERVICE_UNSUPPORTED: dict[str, str] = {}
_SERVER_UNSUPPORTED: dict[str, str] = {}
# Below a service's tunnel, which its first real server's line gave.
_TUNNEL_OPTION = {"type": "--tun-type", "port": "--tun-port", "checksum": "--tun-nocsum/--tun-csum/--tun-remcsum"}
# A problem the checks report at a JSON path below a real server or service: the option of
# the line that gave that field.
_FIELD_OPTION = {
    "weight": "-w",
    "port": "port",
    "scheduler": "-s",
    "persistence": "-p",
    "timeout": "-p",
    "granularity": "-M",
    "engine": "--pe",
    "scheduler_flags": "-b",
    "one_packet": "-o",
    "tunnel": "--tun-type",
    "protocol": "protocol",
    "forwarding": "forwarding",
}


class ImportFailed(Exception):
    """The import cannot go on: each message is one line for stderr; nothing was written."""

    def __init__(self, messages: list[str], usage: bool = False):
        super().__init__("; ".join(messages))
        self.messages = messages
        self.usage = usage  # a usage error (exit 2) rather than bad input (exit 1)


@dataclass(frozen=True)
class Source:
    director: str
    path: str  # as given: a path, or "-" for standard input
    name: str  # how messages name it

    def read(self) -> str:
        try:
            data = sys.stdin.buffer.read() if self.path == "-" else Path(self.path).read_bytes()
        except FileNotFoundError:
            raise ImportFailed([f"lvsgen: import: {self.name}: no such file"]) from None
        except OSError as err:
            raise ImportFailed([f"lvsgen: import: {self.name}: cannot read it: {err.strerror or err}"]) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ImportFailed([f"lvsgen: import: {self.name}: not text (byte {err.start + 1} is not UTF-8): give the file 'ipvsadm -S -n' wrote"]) from None


@dataclass(frozen=True)
class Director:
    """--director NAME=ADDRESS/PREFIX[@INTERFACE], and --nat the same way."""

    option: str  # as given, for messages
    name: str
    address: str
    interface: str | None

    def ip(self) -> IPAddress | None:
        try:
            return ip_interface(self.address).ip
        except ValueError:
            return None  # the schema check says what is wrong with it


@dataclass
class _Vip:
    address: IPAddress
    director: str
    first: tuple[str, int]  # (source, line) of its first service
    services: list[tuple[dict[str, Any], saved.Service]] = field(default_factory=list)


def _name_pattern() -> re.Pattern[str]:
    return re.compile(schema.load_schema()["$defs"]["name"]["pattern"])


def parse_source(arg: str) -> Source:
    pattern = _name_pattern()
    name, eq, path = arg.partition("=")
    if eq and pattern.match(name):
        if not path:
            raise ImportFailed([f"lvsgen: import: {json.dumps(arg)}: give the saved table after '=', like {name}=/path/to/{name}.rules, or {name}=- for standard input"], usage=True)
        return Source(name, path, "<stdin>" if path == "-" else path)
    if arg == "-":
        raise ImportFailed(["lvsgen: import: standard input needs a director name: write NAME=-, like lb1=-"], usage=True)
    stem = Path(arg).name.split(".", 1)[0]
    if not pattern.match(stem):
        raise ImportFailed([f"lvsgen: import: cannot tell the director's name from the file name {json.dumps(Path(arg).name)}: its name up to the first dot must be a lowercase DNS label (like lb1 in lb1.rules); write NAME={arg}, like lb1={arg}"], usage=True)
    return Source(stem, arg, arg)


def parse_director(arg: str, option: str) -> Director:
    name, eq, rest = arg.partition("=")
    address, at, interface = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not eq or not name or not address or (at and not interface):
        raise ImportFailed([f"lvsgen: import: {option} {arg}: write {option} NAME=ADDRESS/PREFIX[@INTERFACE], like {option} lb1=192.0.2.2/24@eth0"], usage=True)
    return Director(f"{option} {arg}", name, address, interface or None)


def default_name(output: str) -> str:
    stem = Path(output).name
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    return stem if _name_pattern().match(stem) else DEFAULT_NAME


def vip_name(address: IPAddress) -> str:
    """A name for the VIP from its address: vip-192-0-2-100, vip-2001-db8--100."""
    name = "vip-" + text(address).replace(":", "-").replace(".", "-")
    return name + "0" if name.endswith("-") else name


# --- one table: its lines, read for what a cluster file can say --------------------------------
class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, str]] = []  # (source, line, message)

    def add(self, source: str, line: int, message: str) -> None:
        self.items.append((source, line, message))

    def messages(self, order: list[str]) -> list[str]:
        out = []
        for source in dict.fromkeys(order):
            out += saved.render(source, [(n, m) for s, n, m in self.items if s == source])
        return out


def _options(words: tuple[str, ...], arity: dict[str, int], unsupported: dict[str, str], source: str, number: int, problems: _Problems) -> dict[str, str] | None:
    """The options of one line by name (a flag with no value maps to ""); None after a problem."""
    found: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-x", "-y"):
            what = {"-x": "an upper connection threshold (-x)", "-y": "a lower connection threshold (-y)"}[word]
            problems.add(source, number, f"{what} in a saved table: 'ipvsadm -S' never prints thresholds, so this line was not saved by it; delete {word} here and give the real server \"upper_threshold\"/\"lower_threshold\" in the cluster file")
            return None
        if word in unsupported:
            problems.add(source, number, f"{unsupported[word]} is not something lvsgen offers" + _NOT_EXPRESSIBLE)
            return None
        if word not in arity:
            what = "option" if word.startswith("-") else "word"
            problems.add(source, number, f"unknown {what} {json.dumps(word)}: lvsgen imports the options 'ipvsadm -S -n' prints for what a cluster file can describe ({', '.join(sorted(arity))})")
            return None
        if word in found or (word in _FORWARDING and any(f in found for f in _FORWARDING)):
            problems.add(source, number, f"{word} is given twice, or with another forwarding method: a line has each option once")
            return None
        if word == "-p":  # ipvsadm -p takes an optional timeout
            value = words[i + 1] if i + 1 < len(words) and words[i + 1].isdigit() else ""
            found[word] = value or str(_PERSISTENCE_DEFAULT)
            i += 2 if value else 1
            continue
        if arity[word]:
            if i + 1 >= len(words):
                problems.add(source, number, f"{word} needs a value: the line is cut short")
                return None
            found[word] = words[i + 1]
            i += 2
        else:
            found[word] = ""
            i += 1
    return found


def _granularity(mask: str, address: IPAddress, source: str, number: int, problems: _Problems) -> int | None:
    """-M as a prefix length: a netmask for IPv4 services, a length for IPv6 ones."""
    if address.version == 6:
        if not mask.isdigit():
            problems.add(source, number, f"-M {mask}: an IPv6 service's persistence netmask is a prefix length, like -M 64")
            return None
        return int(mask)
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        problems.add(source, number, f"-M {mask} is not a netmask like 255.255.255.0 (one run of ones, then zeros): a cluster file gives persistence granularity as a prefix length")
        return None


def _service(svc: saved.Service, director: Director, source: str, problems: _Problems) -> dict[str, Any] | None:
    cmd = svc.line.command
    number = svc.line.number
    flag, where = cmd.service.split(" ", 1)
    if flag == saved.FWMARK:
        mark = where.split(" ")[0]
        problems.add(
            source, number,
            f"firewall-mark service (-f {where}): a saved table does not say which packets carry mark {mark} (the host's firewall rules do);"
            f" leave this service out of the import (delete its lines) and add it to the cluster file by hand, with \"fwmark\": {mark} and the \"ports\" that get the mark",
        )
        return None
    address, port = saved.parse_address_port(where)
    opts = _options(cmd.options, {"-s": 1, "-p": 1, "-M": 1, "--pe": 1, "-b": 1, "-o": 0}, _SERVICE_UNSUPPORTED, source, number, problems)
    if opts is None:
        return None
    out: dict[str, Any] = {"protocol": _PROTOCOL[flag], "port": port, "scheduler": opts["-s"]}
    if "-M" in opts and "-p" not in opts:
        problems.add(source, number, f"-M {opts['-M']} without -p: a netmask groups the clients of a persistent service; add -p TIMEOUT or drop -M")
        return None
    if "--pe" in opts and "-p" not in opts:
        problems.add(source, number, f"--pe {opts['--pe']} without -p: a persistence engine works on a persistent service; add -p TIMEOUT or drop --pe")
        return None
    if "-b" in opts:
        out["scheduler_flags"] = opts["-b"].split(",")
    if "-o" in opts:
        out["one_packet"] = True
    persistence: dict[str, Any] | None = None
    if "-p" in opts:
        persistence = {"timeout": int(opts["-p"])}
        if "-M" in opts:
            granularity = _granularity(opts["-M"], address, source, number, problems)
            if granularity is None:
                return None
            if granularity != address.max_prefixlen:
                persistence["granularity"] = granularity
        if "--pe" in opts:
            persistence["engine"] = opts["--pe"]
    if not svc.servers:
        problems.add(
            source,
            number,
            f"service {cmd.service} has no real servers, and a service in a cluster file needs at least one: add its real servers, or leave it out of the import (delete the line) and set \"owns_ipvs_table\": false on the director, so that setup.sh leaves it alone",
        )
        return None
    servers: list[dict[str, Any]] = []
    forwarding: tuple[str, int] | None = None  # (flag, line) of the first real server
    tunnel: dict[str, Any] = {}
    ok = True
    own = director.ip()
    for line in svc.servers:
        rs = _server(line, cmd.service, address, port, own, director.name, source, problems)
        if rs is None:
            ok = False
            continue
        entry, flag_used, tunnel_used = rs
        if forwarding is None:
            forwarding = (flag_used, line.number)
            tunnel = tunnel_used
        elif flag_used != forwarding[0]:
            problems.add(source, line.number, f"forwarding {flag_used} differs from {forwarding[0]} of the service's first real server (line {forwarding[1]}): a cluster file gives a service one forwarding method")
            ok = False
            continue
        elif tunnel_used != tunnel:
            problems.add(source, line.number, f"the tunnel ({_tunnel_words(tunnel_used)}) differs from the service's first real server's ({_tunnel_words(tunnel)}, line {forwarding[1]}): a cluster file gives a service one tunnel")
            ok = False
            continue
        servers.append(entry)
    if not ok or forwarding is None:
        return None
    out["forwarding"] = _FORWARDING[forwarding[0]]
    if tunnel and tunnel != {"type": "ipip"}:
        out["tunnel"] = tunnel
    if persistence is not None:
        out["persistence"] = persistence
    out["real_servers"] = servers
    return out


def _tunnel_words(tunnel: dict[str, Any]) -> str:
    words = [f"--tun-type {tunnel.get('type', 'ipip')}"]
    if "port" in tunnel:
        words.append(f"--tun-port {tunnel['port']}")
    if "checksum" in tunnel:
        words.append(f"--tun-{tunnel['checksum']}")
    return " ".join(words)


def _server(
    line: saved.Line, service: str, vip: IPAddress, vip_port: int, own: IPAddress | None, director: str, source: str, problems: _Problems
) -> tuple[dict[str, Any], str, dict[str, Any]] | None:
    cmd = line.command
    number = line.number
    assert cmd.server is not None
    address, port = saved.parse_address_port(cmd.server)
    arity = {"-g": 0, "-m": 0, "-i": 0, "-w": 1, "--tun-type": 1, "--tun-port": 1, "--tun-nocsum": 0, "--tun-csum": 0, "--tun-remcsum": 0}
    opts = _options(cmd.options, arity, _SERVER_UNSUPPORTED, source, number, problems)
    if opts is None:
        return None
    flag = next(f for f in _FORWARDING if f in opts)  # saved.read made sure there is one
    tun_options = [o for o in arity if o.startswith("--tun") and o in opts]
    if tun_options and flag != "-i":
        problems.add(source, number, f"{tun_options[0]} on a {flag} real server: only -i (tun) real servers have a tunnel")
        return None
    checksums = [o for o in ("--tun-nocsum", "--tun-csum", "--tun-remcsum") if o in opts]
    if len(checksums) > 1:
        problems.add(source, number, f"{' and '.join(checksums)}: a tunnel has one checksum option")
        return None
    tunnel: dict[str, Any] = {}
    if flag == "-i":
        tunnel["type"] = opts.get("--tun-type", "ipip")
        if "--tun-port" in opts:
            if not opts["--tun-port"].isdigit():
                problems.add(source, number, f"--tun-port {opts['--tun-port']} is not a port number")
                return None
            tunnel["port"] = int(opts["--tun-port"])
        if checksums and checksums[0] != "--tun-nocsum":
            tunnel["checksum"] = checksums[0][len("--tun-"):]
    if flag != "-m" and port != vip_port:
        problems.add(source, number, f"real server port {port} differs from the service port {vip_port}: under {flag} the kernel uses the service port (ipvsadm -S prints it); only -m (nat) remaps ports")
        return None
    weight = int(opts["-w"])
    entry: dict[str, Any] = {"host": director, "localnode": True} if own is not None and address == own else {"address": text(address)}
    if port != vip_port:
        entry["port"] = port
    if weight != model.schema_default("real_server", "weight"):
        entry["weight"] = weight
    return entry, flag, tunnel


# --- the document ------------------------------------------------------------------------------
@dataclass
class Draft:
    document: dict[str, Any]
    where: dict[str, str]  # JSON path -> "FILE:LINE" or the option it came from
    tables: dict[str, saved.Table]  # director -> its saved table
    problems: list[str]  # lines the document could not take (it holds the rest)


def draft(sources: list[Source], texts: list[str], directors: dict[str, Director], nats: dict[str, Director], cluster: str) -> Draft:
    problems = _Problems()
    tables: dict[str, saved.Table] = {}
    failed_reads: list[str] = []
    for source, body in zip(sources, texts):
        try:
            tables[source.director] = saved.read(body, source.name)
        except saved.SavedError as err:
            failed_reads += err.messages
    if failed_reads:
        raise ImportFailed(failed_reads)
    vips: dict[IPAddress, _Vip] = {}
    for source in sources:
        table = tables[source.director]
        for svc in table.services:
            entry = _service(svc, directors[source.director], source.name, problems)
            if entry is None:
                continue
            address, _ = saved.parse_address_port(svc.name.split(" ", 1)[1])
            vip = vips.get(address)
            if vip is None:
                vip = vips[address] = _Vip(address, source.director, (source.name, svc.line.number))
            elif vip.director != source.director:
                problems.add(source.name, svc.line.number, f"{text(address)} is already a VIP of director {json.dumps(vip.director)} ({vip.first[0]}:{vip.first[1]}): a VIP has one director in a cluster file")
                continue
            vip.services.append((entry, svc))
    if not vips and not problems.items:
        raise ImportFailed([f"lvsgen: import: {', '.join(s.name for s in sources)}: no services: there is nothing to import (a cluster file needs at least one VIP)"])
    where: dict[str, str] = {"$.cluster": f"--name {cluster}"}
    hosts: dict[str, Any] = {}
    for name in sorted(directors):
        spec = directors[name]
        host: dict[str, Any] = {"role": "director", "interface": spec.interface or DEFAULT_INTERFACE, "address": spec.address}
        where[schema.json_path(["hosts", name])] = spec.option
        if name in nats:
            nat = nats[name]
            if nat.interface:
                host["nat_interface"] = nat.interface
            host["nat_address"] = nat.address
            for key in ("nat_interface", "nat_address"):
                where[schema.json_path(["hosts", name, key])] = nat.option
        hosts[name] = host
    document_vips: dict[str, Any] = {}
    rank = {s.director: i for i, s in enumerate(sorted(sources, key=lambda s: s.director))}
    for vip in sorted(vips.values(), key=lambda v: rank[v.director]):
        name = vip_name(vip.address)
        assert name not in document_vips, f"two VIPs named {name}"
        document_vips[name] = {"address": text(vip.address), "director": vip.director, "services": [entry for entry, _ in vip.services]}
        origin = vip.first[0]
        where[schema.json_path(["vips", name])] = f"{origin}:{vip.first[1]}"
        for index, (_, svc) in enumerate(vip.services):
            where[schema.json_path(["vips", name, "services", index])] = f"{origin}:{svc.line.number}"
            for position, line in enumerate(svc.servers):
                where[schema.json_path(["vips", name, "services", index, "real_servers", position])] = f"{origin}:{line.number}"
            if svc.servers:  # the tunnel options are on the real servers' lines; the first one's gave it
                where[schema.json_path(["vips", name, "services", index, "tunnel"])] = f"{origin}:{svc.servers[0].number}"
    document = {"cluster": cluster, "hosts": hosts, "vips": document_vips}
    return Draft(document, where, tables, problems.messages([s.name for s in sources]))


_LAST_PART = re.compile(r"(\.[A-Za-z_][A-Za-z0-9_]*|\[[^\]]*\])$")


def _locate(problem: Problem, where: dict[str, str]) -> str:
    """``FILE:LINE: message`` (or ``OPTION: message``) for a problem at a JSON path."""
    path = problem.where
    fields: list[str] = []
    while path and path not in where:
        match = _LAST_PART.search(path)
        if match is None:
            break
        fields.insert(0, match.group(1).strip(".[]\""))
        path = path[: match.start()]
    if path not in where:
        return f"lvsgen: import: {problem.where}: {problem.message}"
    place = where[path]
    if place.startswith("--"):
        return f"lvsgen: import: {place}: {problem.message}"
    table = _TUNNEL_OPTION if path.endswith(".tunnel") else _FIELD_OPTION
    option = next((table[f] for f in reversed(fields) if f in table), "--tun-type" if table is _TUNNEL_OPTION else None)
    return f"{place}: " + (f"{option}: " if option else "") + problem.message


def check(d: Draft) -> dict[str, str]:
    """Validate the document as `lvsgen build` does, and report its problems together with
    the lines it could not take; return each director's rules file."""
    found: list[Problem] = []
    if d.document["vips"]:  # else every service had a problem of its own, reported already
        try:
            schema.validate(d.document)
            semantic.check(d.document)
        except InputError as err:
            found = err.problems
    if found or d.problems:
        messages = list(d.problems) + [_hint(_locate(p, d.where)) for p in found]
        raise ImportFailed(sorted(dict.fromkeys(messages), key=_order))
    cluster = model.build(d.document, "import")
    rules = {}
    for host, files in plan.plan(cluster).items():
        for f in files:
            if f.path == RULES:
                rules[host] = f.text
    return rules


def _hint(message: str) -> str:
    """The checks speak of the cluster file; say which option of this command sets the value."""
    if '"nat_address"' in message:
        return message + " (with lvsgen import: --nat DIRECTOR=ADDRESS/PREFIX[@INTERFACE])"
    if "direct routing needs the director and its real servers on one L2 segment" in message:
        return message + " (or check the address and prefix given with --director)"
    return message


def _order(message: str) -> tuple[str, int, str]:
    match = re.match(r"^(.*):([0-9]+): ", message)
    return (match.group(1), int(match.group(2)), message) if match else ("", 0, message)


def round_trip(d: Draft, rules: dict[str, str]) -> None:
    """Each director's rules file, built from the document, must be its saved table: the same
    lines (in ipvsadm's order the file is; the table is compared as sorted lines)."""
    problems: list[str] = []
    for director, table in sorted(d.tables.items()):
        built = rules[director].splitlines()
        by_key = {_key(line): line for line in built}
        given: list[tuple[int, str]] = [(svc.line.number, svc.line.command.text) for svc in table.services]
        given += [(line.number, line.command.text) for svc in table.services for line in svc.servers]
        seen = set()
        for number, line in sorted(given):
            seen.add(_key(line))
            if line in built:
                continue
            other = by_key.get(_key(line))
            if other is not None:
                problems.append(f"{table.source}:{number}: the cluster file gives this line back as {json.dumps(other)}: write it the way 'ipvsadm -S -n' prints it")
            else:
                problems.append(f"{table.source}:{number}: the cluster file does not give this line back")
        for line in built:
            if _key(line) not in seen:
                problems.append(f"{table.source}: the cluster file adds {json.dumps(line)}, which is not in the table")
    if problems:
        raise ImportFailed(problems)


def _key(line: str) -> tuple[str, str, str | None]:
    cmd = saved.split_command(line.split(" "))
    return (cmd.command, cmd.service, cmd.server)


# --- writing it --------------------------------------------------------------------------------
def to_json(value: Any, depth: int = 0) -> str:
    """Readable and stable: objects and lists that hold lists of objects are spread over
    lines; host entries, real servers and persistence fit on one."""
    pad = "  " * depth
    flat = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if not isinstance(value, (dict, list)) or not value:
        return flat
    if depth >= 2 and len(pad) + len(flat) <= 110 and not _holds_objects_in_list(value):
        return flat
    inner = "  " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {to_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{to_json(v, depth + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def _holds_objects_in_list(value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(v, dict) for v in value) or any(_holds_objects_in_list(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_objects_in_list(v) for v in value.values())
    return False


def write(output: str, body: str) -> None:
    if output == "-":
        sys.stdout.write(body)
        return
    target = Path(output)
    temp = target.with_name(f".{target.name}.lvsgen-tmp")
    try:
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except OSError as err:
        try:
            temp.unlink()
        except OSError:
            pass
        raise ImportFailed([f"lvsgen: import: cannot write {output}: {err.strerror or err}"]) from None


# --- the command -------------------------------------------------------------------------------
def run(inputs: list[str], output: str, name: str | None, director_options: list[str], nat_options: list[str], force: bool) -> None:
    """Everything `lvsgen import` does; raises ImportFailed. Nothing is written on failure."""
    sources = [parse_source(arg) for arg in inputs]
    usage: list[str] = []
    seen: dict[str, str] = {}
    for source in sources:
        if source.director in seen:
            usage.append(f"lvsgen: import: {source.name} and {seen[source.director]} are both director {json.dumps(source.director)}: give each director one table, naming them with NAME=PATH where the file names clash")
        seen.setdefault(source.director, source.name)
    if sum(1 for s in sources if s.path == "-") > 1:
        usage.append("lvsgen: import: standard input can hold one table only")
    directors: dict[str, Director] = {}
    nats: dict[str, Director] = {}
    for option, given, into in (("--director", director_options, directors), ("--nat", nat_options, nats)):
        for arg in given:
            spec = parse_director(arg, option)
            if spec.name not in seen:
                usage.append(f"lvsgen: import: {spec.option}: no table for director {json.dumps(spec.name)}; the tables are for {', '.join(sorted(seen))}")
            elif spec.name in into:
                usage.append(f"lvsgen: import: {spec.option}: director {json.dumps(spec.name)} is already given ({into[spec.name].option})")
            into.setdefault(spec.name, spec)
    for director in sorted(set(seen) - set(directors)):
        usage.append(
            f"lvsgen: import: director {json.dumps(director)} needs its own address: give --director {director}=ADDRESS/PREFIX[@INTERFACE], the address it has on the interface facing the VIP network (like --director {director}=192.0.2.2/24@eth0; the interface is eth0 when left out)"
        )
    if usage:
        raise ImportFailed(usage, usage=True)
    if output != "-" and Path(output).exists() and not force:
        raise ImportFailed([f"lvsgen: import: {output} exists; give --force to replace it, or another -o"])
    cluster = name if name is not None else default_name(output)
    texts = [source.read() for source in sources]
    d = draft(sources, texts, directors, nats, cluster)
    rules = check(d)
    round_trip(d, rules)
    write(output, to_json(d.document) + "\n")
