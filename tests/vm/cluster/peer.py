"""Guest-side traffic peers for the cluster test (run with `python3 -I -S`: fast imports).

    peer.py serve NAME SPEC...   SPEC = tcp:ADDR:PORT | udp:ADDR:PORT. TCP: HTTP/1.0,
                                 GET / -> "NAME\\n", GET /big -> 2 MiB. UDP: any datagram ->
                                 "NAME\\n". Binding to the VIP makes UDP replies come from it.
    peer.py client PLAN.json     PLAN: [{"key", "protocol", "vip", "port", "n", "path"}]; prints
                                 JSON {key: [first line of each answer, or "ERR ..."]}; a new
                                 connection (TCP) or a new socket (UDP) for every request.
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


def serve(name, specs):
    for spec in specs:
        proto, rest = spec.split(":", 1)
        addr, port = rest.rsplit(":", 1)
        if proto == "tcp":
            threading.Thread(target=vmhttp.serve, args=(addr, int(port), name), daemon=True).start()
        else:
            threading.Thread(target=serve_udp, args=(name, addr, int(port)), daemon=True).start()
    time.sleep(0.5)
    print("serving", name, " ".join(specs), flush=True)
    # Nobody reads our output from here on: a full pipe must never block a server thread.
    sys.stdout = open(os.devnull, "w")
    threading.Event().wait()


def ask_udp(vip, port, timeout):
    s = socket.socket(fam(vip), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"who\n", (vip, port))
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
                    body = ask_udp(item["vip"], item["port"], 3)
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


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        client(sys.argv[2])
