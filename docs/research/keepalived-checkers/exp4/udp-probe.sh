#!/bin/bash
# MISC_CHECK probe for a UDP service: send a datagram on a connected socket, succeed iff a
# reply arrives within 1 s (ICMP port unreachable fails the read at once).
exec 3<>/dev/udp/$1/$2 || exit 1
printf 'ping\n' >&3 || exit 1
read -t 1 -r -N 1 c <&3 || exit 1
exit 0
