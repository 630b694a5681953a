"""UDP responder for the keepalived lab: answers a DNS query (>= 12 bytes, QR=0) with one A
record (192.0.2.24), anything else with b"ok\n". Prints 'serving' once bound."""
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
print("serving udp", port, flush=True)
while True:
    data, peer = s.recvfrom(4096)
    print("from", peer[0], len(data), flush=True)
    if len(data) >= 12 and not (data[2] & 0x80):
        # question ends after the qname (zero byte) + 4 bytes
        i = 12
        while i < len(data) and data[i] != 0:
            i += data[i] + 1
        q = data[12:i + 5]
        resp = data[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + q
        resp += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 24])
        s.sendto(resp, peer)
    else:
        s.sendto(b"ok\n", peer)
