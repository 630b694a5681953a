#!/usr/bin/env bash
# Build the boot image for lvsgen's real-kernel VM tests (see tests/vm/README.md).
#
#   usage: tests/vm/build-image.sh        prints the image directory on stdout (last line)
#
# The guest runs Debian's generic `linux-image-amd64` kernel (it has IPVS and 9p) and uses the
# HOST's userland: its /init mounts the host's / read-only over 9p, puts a tmpfs overlay on
# top and chroots into it. So the image is small: the kernel, a busybox for the init stage and
# the kernel modules the tests need.
#
# Result: ${LVSGEN_VM_CACHE:-<repo>/.cache/vm}/<kernel-version>/{vmlinuz,base.cpio.gz,STAMP}
#   - <kernel-version> is resolved through the linux-image-amd64 metapackage every time
#     (old ABI versions drop off the mirrors, so never hard-code one).
#   - STAMP is the sha256 of this script + guest-init.sh; an image with another STAMP is
#     rebuilt (tests/vm/vm.py checks the same value), so editing the module list or /init
#     is picked up automatically.
#   - Already built: prints the directory and does nothing else.
#   - Safe to rerun after an interruption: everything is built in a temporary directory
#     that is renamed into place at the end; a lock serialises concurrent builds.
#
# Host requirements: apt-get/apt-cache/dpkg-deb (downloads only, nothing is installed),
# kmod (depmod, modprobe --show-depends), busybox (static or dynamic), gzip, flock, sha256sum.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$VM_DIR/../.." && pwd)
CACHE=${LVSGEN_VM_CACHE:-$REPO/.cache/vm}
META=linux-image-amd64
INIT_SRC=$VM_DIR/guest-init.sh

# Modules insmod-ed by /init at boot: only what the guest needs to mount its root. The guest is
# bare: lvsgen's artifacts must load every module they use (setup.sh's modprobe, the boot
# path's modules-load.d), and the kernel's autoloader is off (/sbin/lvsgen-no-autoload), so a
# module they forget cannot slip in by itself. Test harnesses modprobe what they use (veth,
# bridge; a hand-made cluster's schedulers).
BOOT_MODULES=(virtio_pci 9pnet_virtio 9p overlay)
# Modules put into the image but NOT loaded at boot: loaded inside the chroot by the host's
# kmod with this image's modules.dep.bin and modules.softdep (libcrc32c's soft dependency on
# crc32c included), by lvsgen's artifacts or by the tests.
EXTRA_MODULES=(
  crc32c_generic
  ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
  ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_mh ip_vs_twos
  ipip veth bridge dummy
  ip6_tunnel sit fou fou6 ip_gre ip6_gre gre 8021q macvlan vrf nf_conntrack_netlink
  nf_tables sctp ip_vs_pe_sip nf_conntrack_sip
)
# Modules that must exist (the others are taken "if present").
REQUIRED_MODULES=(crc32c_generic virtio_pci 9pnet_virtio 9p overlay ip_vs ip_vs_rr ip_vs_wrr
                  ipip veth bridge dummy nf_tables)

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in apt-cache apt-get dpkg-deb depmod modprobe busybox gzip flock sha256sum python3; do
  command -v "$t" >/dev/null || die "missing host tool '$t' (Debian packages: apt dpkg kmod busybox gzip util-linux coreutils)"
done
[[ -f $INIT_SRC ]] || die "missing $INIT_SRC"

# --- 1. which kernel -----------------------------------------------------------------------
KPKG=$(apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[[ -n $KPKG ]] || die "cannot resolve $META with apt-cache depends (run apt-get update?)"
KVER=${KPKG#linux-image-}
OUT=$CACHE/$KVER
STAMP=$(cat "${BASH_SOURCE[0]}" "$INIT_SRC" | sha256sum | cut -d' ' -f1)

is_built() {
  [[ -s $OUT/vmlinuz && -s $OUT/base.cpio.gz && -f $OUT/STAMP ]] && [[ $(<"$OUT/STAMP") == "$STAMP" ]]
}
if is_built; then echo "$OUT"; exit 0; fi

mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.lock"
flock 9
if is_built; then echo "$OUT"; exit 0; fi     # built by a concurrent run while we waited

TMP=$(mktemp -d "$CACHE/.build-$KVER.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS

# --- 2. fetch the kernel .deb (cached; apt-get download checks the archive's hash) -------
deb=$(find "$CACHE/debs" -maxdepth 1 -name "${KPKG}_*_amd64.deb" | sort | tail -n 1)
cand=$(apt-cache policy "$KPKG" | awk '/Candidate:/{print $2}')
if [[ -z $deb || $deb != *"_${cand/*:/}_amd64.deb" ]]; then
  log "downloading $KPKG $cand"
  mkdir "$TMP/dl"
  chmod 755 "$TMP" "$TMP/dl"      # lets apt's _apt user write there (avoids a warning)
  (cd "$TMP/dl" && apt-get download -q "$KPKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
  new=$(find "$TMP/dl" -maxdepth 1 -name "${KPKG}_*.deb" | head -n 1)
  [[ -n $new ]] || die "apt-get download $KPKG failed"
  find "$CACHE/debs" -maxdepth 1 -name 'linux-image-*.deb' -delete   # drop older kernels
  mv "$new" "$CACHE/debs/"
  deb=$CACHE/debs/$(basename "$new")
fi

# --- 3. unpack the kernel, index its modules ------------------------------------------------
X=$TMP/x
log "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$X"
[[ -d $X/lib/modules/$KVER ]] || die "$deb has no lib/modules/$KVER"
depmod -b "$X" "$KVER"
KCONF=$X/boot/config-$KVER
grep -q '^CONFIG_9P_FS=[ym]' "$KCONF" || die "$KPKG has no 9p support"

# --- 4. initramfs tree ---------------------------------------------------------------------
R=$TMP/root
MD=$R/lib/modules/$KVER
mkdir -p "$R"/{bin,sbin,dev,proc,sys,run,tmp,host,ovl,newroot,etc} "$MD"
install -m 755 "$INIT_SRC" "$R/init"
cp "$X/boot/vmlinuz-$KVER" "$TMP/vmlinuz"
# Uncompressed ELF vmlinux for qemu's PVH direct boot (-kernel vmlinux): skips the in-guest
# xz decompression of the bzImage, several seconds under TCG. vm.py falls back to vmlinuz.
if grep -q '^CONFIG_PVH=y' "$KCONF"; then
  python3 - "$TMP/vmlinuz" "$TMP/vmlinux" <<'PY' || { log "no PVH vmlinux (booting the bzImage)"; rm -f "$TMP/vmlinux"; }
import lzma, sys
data = open(sys.argv[1], "rb").read()
off = data.find(b"\xfd7zXZ\x00")
if off < 0:
    sys.exit("bzImage payload is not xz")
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[off:])
if elf[:4] != b"\x7fELF":
    sys.exit("payload is not an ELF")
open(sys.argv[2], "wb").write(elf)
PY
fi

# busybox for the init stage (Debian's `busybox` is dynamic, `busybox-static` is static:
# either works, shared libraries are copied when needed). /init only runs busybox applets;
# the tests themselves run the host's tools inside the chroot.
BB=$(command -v busybox)
cp -L "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do
  [[ $a == busybox ]] || ln -sf busybox "$R/bin/$a"
done
# The kernel's module autoloader (request_module) runs /proc/sys/kernel/modprobe in the
# initramfs root. /init points it at this refusal, which leaves a trace in the kernel log.
ln -s ../bin/busybox "$R/sbin/modprobe"
printf '%s\n' '#!/bin/sh' \
  'echo "lvsgen-vm: refused module autoload: $*" > /dev/kmsg' \
  'exit 1' > "$R/sbin/lvsgen-no-autoload"
chmod 0755 "$R/sbin/lvsgen-no-autoload"
if ldd "$BB" >/dev/null 2>&1; then
  while read -r lib; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done < <(ldd "$BB" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
fi

# kernel modules with their dependencies (hard and soft), in load order
declare -A have=()
LOADLIST=()
add_module() {  # $1 = module name, $2 = boot|extra
  local m=$1 what=$2 line path rel
  # "insmod PATH": the path is the rest of the line (it may hold spaces: the cache lives in
  # the checkout); -C /dev/null means no module options follow it.
  while IFS= read -r line; do
    [[ $line == "insmod "* ]] || continue
    path=${line#insmod }
    path=${path%"${path##*[![:space:]]}"}
    rel=${path#"$X/lib/modules/$KVER/"}
    if [[ -z ${have[$rel]:-} ]]; then
      mkdir -p "$MD/$(dirname "$rel")"
      cp "$path" "$MD/$rel"
      have[$rel]=extra
    fi
    if [[ $what == boot && ${have[$rel]} != boot ]]; then
      have[$rel]=boot
      LOADLIST+=("$rel")
    fi
  done < <(modprobe -d "$X" -S "$KVER" -C /dev/null --show-depends "$m" 2>/dev/null)
}
for m in "${REQUIRED_MODULES[@]}"; do
  modprobe -d "$X" -S "$KVER" -C /dev/null --show-depends "$m" >/dev/null 2>&1 \
    || grep -qE "/$m\.ko" "$X/lib/modules/$KVER/modules.builtin" \
    || die "module $m not found in $KPKG"
done
for m in "${BOOT_MODULES[@]}"; do add_module "$m" boot; done
for m in "${EXTRA_MODULES[@]}"; do add_module "$m" extra; done
for f in modules.order modules.builtin modules.builtin.modinfo; do
  [[ -f $X/lib/modules/$KVER/$f ]] && cp "$X/lib/modules/$KVER/$f" "$MD/"
done
depmod -b "$R" "$KVER"          # text + .bin indexes: busybox and kmod modprobe both work
printf '%s\n' "${LOADLIST[@]}" > "$MD/lvsgen-boot-modules"
echo "$KVER" > "$R/etc/lvsgen-vm-kernel"

# --- 5. pack (newc, root-owned, gzip) and move into place ----------------------------------
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null | gzip -6) > "$TMP/base.cpio.gz"
echo "$STAMP" > "$TMP/STAMP"
printf '%s %s\n' "$KPKG" "$(dpkg-deb -f "$deb" Version)" > "$TMP/KERNEL"
mkdir "$TMP/image"
mv "$TMP/vmlinuz" "$TMP/base.cpio.gz" "$TMP/KERNEL" "$TMP/image/"
if [[ -f $TMP/vmlinux ]]; then mv "$TMP/vmlinux" "$TMP/image/"; fi
mv "$TMP/STAMP" "$TMP/image/STAMP"              # last: its presence marks a complete image
if [[ -e $OUT ]]; then mv "$OUT" "$TMP/old"; fi
mv "$TMP/image" "$OUT"
log "built $OUT in $((SECONDS - start)) s: ${#have[@]} modules (${#LOADLIST[@]} loaded at boot), initramfs $(du -h "$OUT/base.cpio.gz" | cut -f1)"
echo "$OUT"
