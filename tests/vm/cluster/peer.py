"""Guest-side traffic peers for the cluster test (run with `python3 -I -S`: fast imports).

    peer.py serve NAME SPEC...   SPEC = tcp:ADDR:PORT | udp:ADDR:PORT. TCP: HTTP/1.0,
                                 GET / -> "NAME\\n", GET /big -> 2 MiB. UDP: any datagram ->
                                 "NAME\\n". Binding to the VIP makes UDP replies come from it.
    peer.py client PLAN.json     PLAN: [{"key", "protocol", "vip", "port", "n", "path"}]; prints
                                 JSON {key: [first line of each answer, or "ERR ..."]}; a new
                                 connection (TCP) or a new socket (UDP) for every request.
"""
import json
import socket
import sys
import threading

BIG = 2 * 1024 * 1024


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve_tcp(name, addr, port):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=answer_tcp, args=(conn, name), daemon=True).start()


def answer_tcp(conn, name):
    try:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        parts = data.split(b"\r\n", 1)[0].split()
        body = b"\0" * BIG if len(parts) > 1 and parts[1] == b"/big" else (name + "\n").encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    finally:
        conn.close()


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
        target = serve_tcp if proto == "tcp" else serve_udp
        threading.Thread(target=target, args=(name, addr, int(port)), daemon=True).start()
    print("serving", name, " ".join(specs), flush=True)
    threading.Event().wait()


def get(vip, port, path, timeout):
    s = socket.create_connection((vip, port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


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
                    body = get(item["vip"], item["port"], item.get("path", "/"), 5)
                if item.get("path") == "/big":
                    answers.append(str(len(body)))
                else:
                    answers.append(body.decode("latin-1").split("\n", 1)[0] or "ERR empty")
            except OSError as err:
                answers.append("ERR %s" % err)
        out[item["key"]] = answers
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        client(sys.argv[2])
