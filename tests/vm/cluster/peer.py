"""Guest-side traffic peers for the cluster test (run with `python3 -I -S`: fast imports).

    peer.py serve NAME SPEC...   SPEC = tcp:ADDR:PORT | udp:ADDR:PORT | sctp:ADDR:PORT. TCP:
                                 HTTP/1.0, GET / -> "NAME\\n", GET /big -> 2 MiB. UDP: any
                                 datagram -> "NAME\\n". SCTP: any message on an association ->
                                 "NAME\\n". Binding to the VIP makes replies come from it.
    peer.py client PLAN.json     PLAN: [{"key", "protocol", "vip", "port", "n", "path",
                                 "payload"}]; prints JSON {key: [first line of each answer, or
                                 "ERR ..."]}; a new connection (TCP, SCTP) or a new socket (UDP)
                                 for every request. "payload" (UDP): the datagram to send.
    peer.py ns IFACE SOURCE TARGET  one IPv6 neighbour solicitation for TARGET, from SOURCE, to
                                 TARGET's solicited-node group; prints JSON [MAC of each
                                 neighbour advertisement for TARGET] heard within 2 s.
    peer.py ra IFACE             one IPv6 router advertisement (router lifetime 1800 s, no
                                 prefix) to all nodes on IFACE, as a router on that link sends.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.environ.get("LVSGEN_GUESTLIB", os.path.join(os.path.dirname(__file__), "guest")))
import vmhttp  # noqa: E402  (the test bed's HTTP server and client; TCP side of the peers)


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve_udp(name, addr, port):
    s = socket.socket(fam(addr), socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto((name + "\n").encode(), peer)


def serve_sctp(name, addr, port):
    s = socket.socket(fam(addr), socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    while True:
        conn, _ = s.accept()
        try:
            conn.settimeout(5)
            if conn.recv(2048):
                conn.sendall((name + "\n").encode())
        except OSError:
            pass
        finally:
            conn.close()


def ask_sctp(vip, port, timeout):
    s = socket.socket(fam(vip), socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(timeout)
    try:
        s.connect((vip, port))
        s.sendall(b"who\n")
        return s.recv(2048)
    finally:
        s.close()


def serve(name, specs):
    for spec in specs:
        proto, rest = spec.split(":", 1)
        addr, port = rest.rsplit(":", 1)
        if proto == "tcp":
            threading.Thread(target=vmhttp.serve, args=(addr, int(port), name), daemon=True).start()
        elif proto == "sctp":
            threading.Thread(target=serve_sctp, args=(name, addr, int(port)), daemon=True).start()
        else:
            threading.Thread(target=serve_udp, args=(name, addr, int(port)), daemon=True).start()
    time.sleep(0.5)
    print("serving", name, " ".join(specs), flush=True)
    # Nobody reads our output from here on: a full pipe must never block a server thread.
    sys.stdout = open(os.devnull, "w")
    threading.Event().wait()


def ask_udp(vip, port, timeout, payload=b"who\n"):
    s = socket.socket(fam(vip), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(payload, (vip, port))
        data, _ = s.recvfrom(2048)
        return data
    finally:
        s.close()


def client(plan_file):
    out = {}
    for item in json.load(open(plan_file)):
        answers = []
        for _ in range(item["n"]):
            try:
                if item["protocol"] == "udp":
                    body = ask_udp(item["vip"], item["port"], 3, item.get("payload", "who\n").encode())
                elif item["protocol"] == "sctp":
                    body = ask_sctp(item["vip"], item["port"], 5)
                else:
                    host = "[%s]" % item["vip"] if ":" in item["vip"] else item["vip"]
                    body = vmhttp.get("http://%s:%d%s" % (host, item["port"], item.get("path", "/")), 5)
                if item.get("path") == "/big":
                    answers.append(str(len(body)))
                else:
                    answers.append(body.decode("latin-1").split("\n", 1)[0] or "ERR empty")
            except (OSError, ValueError) as err:
                answers.append("ERR %s" % err)
        out[item["key"]] = answers
    print(json.dumps(out))


def router_advertisement(iface):
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861: 255 or dropped
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(iface))
    # type 134, code 0, checksum (the kernel fills it in), cur hop limit 64, flags 0,
    # router lifetime 1800, reachable time 0, retrans timer 0
    ra = bytes([134, 0, 0, 0, 64, 0]) + (1800).to_bytes(2, "big") + bytes(8)
    s.sendto(ra, ("ff02::1", 0, 0, socket.if_nametoindex(iface)))
    s.close()
    print("sent")


def neighbour_solicitation(iface, source, target):
    """Who answers 'who has TARGET?' on IFACE: the MAC in each advertisement's target
    link-layer address option (RFC 4861 4.3, 4.4; the kernel fills in the checksum)."""
    index = socket.if_nametoindex(iface)
    mac = bytes.fromhex(open("/sys/class/net/%s/address" % iface).read().strip().replace(":", ""))
    t = socket.inet_pton(socket.AF_INET6, target)
    group = socket.inet_ntop(socket.AF_INET6, bytes.fromhex("ff0200000000000000000001ff") + t[13:])
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    s.bind((source, 0, 0, index))
    ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + t + bytes([1, 1]) + mac
    s.sendto(ns, (group, 0, 0, index))
    macs = []
    deadline = time.time() + 2
    while time.time() < deadline:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            break
        if len(data) < 24 or data[0] != 136 or data[8:24] != t:
            continue
        opts = data[24:]
        while len(opts) >= 8 and opts[1]:
            if opts[0] == 2:
                macs.append(":".join("%02x" % b for b in opts[2:8]))
            opts = opts[opts[1] * 8:]
    s.close()
    print(json.dumps(sorted(set(macs))))


if __name__ == "__main__":
    if sys.argv[1] == "ns":
        neighbour_solicitation(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "ra":
        router_advertisement(sys.argv[2])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        client(sys.argv[2])
