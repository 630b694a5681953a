"""Guest-side load for the converge test (run with `python3 -I -S`).

    load.py stream URL STOPFILE OUT     GET URL every 40 ms, each on a new connection, until
                                        STOPFILE exists; writes one line per request to OUT:
                                        "<monotonic seconds> ok <first body line>" or
                                        "<monotonic seconds> ERR <why>"
    load.py slow URL OUT                one GET of /big (2 MiB), read at about 128 KiB/s so
                                        that it lasts some 16 s; writes the byte count or ERR
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.environ.get("LVSGEN_GUESTLIB", ""))
import vmhttp  # noqa: E402


def stream(url, stop, out):
    with open(out, "w") as fh:
        while not os.path.exists(stop):
            t = time.monotonic()
            try:
                body = vmhttp.get(url, 3)
                fh.write("%.3f ok %s\n" % (t, body.decode("latin-1").split("\n", 1)[0]))
            except Exception as err:  # every failure counts
                fh.write(("%.3f ERR %s: %s\n" % (t, type(err).__name__, err)).replace("\n", " ").rstrip() + "\n")
            fh.flush()
            time.sleep(0.04)


def slow(url, out):
    host, port, path = vmhttp.split_url(url)
    got = 0
    try:
        with socket.socket(vmhttp.family(host), socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.settimeout(10)
            s.connect((host, port))
            s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise ValueError("closed before the headers")
                data += chunk
            got = len(data.split(b"\r\n\r\n", 1)[1])
            while True:
                chunk = s.recv(8192)
                if not chunk:
                    break
                got += len(chunk)
                time.sleep(0.0625)
        result = str(got)
    except Exception as err:
        result = "ERR %s: %s after %d bytes" % (type(err).__name__, err, got)
    with open(out, "w") as fh:
        fh.write(result + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "stream":
        stream(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        slow(sys.argv[2], sys.argv[3])
