"""Minimal HTTP server and client for the guest, on raw sockets: no http.server/urllib,
whose imports cost seconds under TCG (run with `python3 -I -S`). Used by lib.sh:

    vmhttp.py serve ADDR PORT NAME       GET / -> "NAME\\n", GET /big -> 2 MiB; HTTP/1.0
    vmhttp.py fetch URL N TIMEOUT        N GETs (new connection each); one line per request:
                                         the body's first line, or "ERR <why>"
    vmhttp.py bytes URL N TIMEOUT        total body bytes of N GETs (failures count 0)
"""
import socket
import sys
import threading

BIG = 2 * 1024 * 1024


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def handle(conn, name):
    try:
        conn.settimeout(60)  # a slow reader of /big (the converge test) takes some 16 s
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        parts = data.split(b"\r\n", 1)[0].split()
        path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
        if path == "/":
            body, status = name.encode() + b"\n", b"200 OK"
        elif path == "/big":
            body, status = bytes(BIG), b"200 OK"
        else:
            body, status = b"not found\n", b"404 Not Found"
        conn.sendall(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                     b"Connection: close\r\n\r\n" + body)
    except OSError:
        pass
    finally:
        conn.close()


def serve(addr, port, name):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    print(f"serving {name} on {addr}:{port}", flush=True)
    while True:
        conn, peer = s.accept()
        print(f"request from {peer[0]}", flush=True)
        threading.Thread(target=handle, args=(conn, name), daemon=True).start()


def split_url(url):
    if not url.startswith("http://"):
        raise ValueError(f"not an http:// URL: {url}")
    hostport, _, path = url[7:].partition("/")
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 80
    else:
        host, _, p = hostport.partition(":")
        port = int(p) if p else 80
    return host, port, "/" + path


def get(url, timeout):
    host, port, path = split_url(url)
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("truncated response")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 200 " not in status + " ":
        raise ValueError(status)
    return body


def main(argv):
    cmd = argv[1]
    if cmd == "serve":
        serve(argv[2], int(argv[3]), argv[4])
        return 0
    url, n, timeout = argv[2], int(argv[3]), float(argv[4])
    total = 0
    for _ in range(n):
        try:
            body = get(url, timeout)
        except Exception as e:  # any failure is reported as a line
            if cmd == "fetch":
                print(f"ERR {type(e).__name__}: {e}".replace("\n", " "), flush=True)
            continue
        total += len(body)
        if cmd == "fetch":
            lines = body.decode("utf-8", "replace").splitlines()
            print(lines[0] if lines else "", flush=True)
    if cmd == "bytes":
        print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
