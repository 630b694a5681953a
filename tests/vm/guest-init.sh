#!/bin/sh
# shellcheck shell=dash
# /init of lvsgen's VM test image (runs under busybox sh, PID 1). Copied into the initramfs
# by build-image.sh; booted by vm.py. Kernel command line parameters it reads:
#   lvsgen.timeout=SECONDS   kill the test after this long (default 540)
#
# What it does:
#   1. mounts proc/sys/dev, insmods the modules listed in lvsgen-boot-modules (dependency and
#      soft-dependency order resolved at build time: crc32c_generic comes before libcrc32c,
#      which busybox modprobe would not do by itself);
#   2. mounts the host's / (9p tag "hostroot", read-only) with a tmpfs overlay on top as
#      /newroot, fresh proc/sys/dev/run in it, and bind-mounts this kernel's
#      /lib/modules/<kver> into it, so the host's kmod `modprobe` and /sys/module work there;
#   3. mounts the test directory (9p tag "lvsgentest", writable) on /newroot/test;
#   4. runs /test/run.sh chrooted, with a clean environment, under a timeout; its output
#      goes to the result channel (2nd serial port, ttyS1), then
#      "LVSGEN-VM-RESULT rc=N" is written there and on the console; then powers off.
# Exit codes reported besides the test's own: 125 = the guest could not set up the chroot,
# 137 = the test was killed by the guest timeout.
PATH=/bin:/sbin
export PATH
umask 022

up() { read -r u _ < /proc/uptime; echo "$u"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "LVSGEN-VM-INIT uptime=$(up)"

RES=/dev/ttyS1
if [ -c "$RES" ] && stty -F "$RES" raw -echo 2>/dev/null; then :; else RES=/dev/console; fi
say() { echo "$*"; echo "$*" > "$RES"; }

finish() {  # $1 = rc; never returns
  say "LVSGEN-VM-RESULT rc=$1 uptime=$(up)"
  sync
  umount /newroot/test 2>/dev/null
  poweroff -f
  echo o > /proc/sysrq-trigger
  while :; do sleep 60; done
}
die() { say "LVSGEN-VM-ERROR $*"; finish 125; }

TIMEOUT=540
read -r CMDLINE < /proc/cmdline
for w in $CMDLINE; do
  case $w in
    lvsgen.timeout=*) TIMEOUT=${w#*=} ;;
  esac
done

KVER=$(uname -r)
MD=/lib/modules/$KVER
[ -f "$MD/lvsgen-boot-modules" ] || die "image has no modules for kernel $KVER"
while read -r m; do
  insmod "$MD/$m" 2>/dev/null || [ -d "/sys/module/$(basename "$m" .ko | tr - _)" ] \
    || echo "LVSGEN-VM-WARN insmod $m failed"
done < "$MD/lvsgen-boot-modules"
# No autoloading from here on: every module the tests need is loaded by a modprobe someone wrote.
echo /sbin/lvsgen-no-autoload > /proc/sys/kernel/modprobe || die "cannot turn off module autoloading"
say "LVSGEN-VM-MODULES uptime=$(up)"

# --- host root, read-only over 9p, with a tmpfs overlay --------------------------------------
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host \
  || die "cannot mount the host root over 9p (tag hostroot)"
mount -t tmpfs -o mode=755 ovl /ovl
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work /newroot \
  || die "cannot mount the overlay"
N=/newroot
mount -t proc proc $N/proc
mount -t sysfs sysfs $N/sys
mount -t devtmpfs devtmpfs $N/dev
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $N/dev/pts
mount -t tmpfs -o mode=1777 shm $N/dev/shm
mount -t tmpfs -o mode=755 run $N/run
mkdir -p $N/run/netns $N/run/lock
# /tmp is not a fresh tmpfs: a checkout (and pytest's folders) under the host's /tmp must stay
# visible in the guest. The overlay makes it writable, and the writes stay in the guest.
# this kernel's modules (the host has other or no kernels under /lib/modules)
mkdir -p "$N$MD"
mount -o bind "$MD" "$N$MD" || die "cannot bind $MD into the chroot"
mkdir -p $N/test
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 lvsgentest $N/test \
  || die "cannot mount the test directory over 9p (tag lvsgentest)"
[ -x $N/test/run.sh ] || die "no executable run.sh in the test directory"
hostname lvsgen-vm
say "LVSGEN-VM-READY uptime=$(up)"

# --- the test ----------------------------------------------------------------------------------
# Clean environment; /test/.lvsgen-vm.env (written by vm.py) adds LVSGEN_* variables.
timeout -s KILL "$TIMEOUT" chroot $N /usr/bin/env -i \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb LANG=C.UTF-8 LVSGEN_VM=1 \
  /bin/bash -c 'set -a; if [ -f /test/.lvsgen-vm.env ]; then . /test/.lvsgen-vm.env; fi; set +a
                cd /test && exec ./run.sh' \
  > "$RES" 2>&1 < /dev/null
rc=$?
[ $rc = 137 ] && say "LVSGEN-VM-TIMEOUT the test did not finish within $TIMEOUT s"
finish $rc
