"""Boot lvsgen's real-kernel test VM (qemu) and run a test directory in it.

The guest runs Debian's generic kernel (IPVS + 9p) on an initramfs built by
``build-image.sh``; its /init mounts the host's ``/`` read-only over 9p with a tmpfs
overlay and chroots into it, so guest tests use the host's bash, iproute2, ipvsadm,
python3, systemd-networkd ... (see README.md in this folder).

The test directory is shared with the guest as a second, *writable* 9p share mounted on
``/test``: the guest runs ``/test/run.sh`` and whatever it writes under ``/test`` is in
``test_dir`` on the host afterwards (no need to stream result files over a serial port).

Command line use::

    python3 tests/vm/vm.py TESTDIR [TIMEOUT]      # exit status = the guest test's status
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

VM_DIR = Path(__file__).resolve().parent
REPO = VM_DIR.parents[1]
BUILD_SCRIPT = VM_DIR / "build-image.sh"
GUEST_INIT = VM_DIR / "guest-init.sh"
GUEST_LIB = VM_DIR / "guest"
QEMU = "qemu-system-x86_64"
KERNEL_METAPACKAGE = "linux-image-amd64"
ENV_FILE = ".lvsgen-vm.env"  # written into test_dir for the guest, removed afterwards
RESULT_RE = re.compile(r"^LVSGEN-VM-RESULT rc=(\d+)", re.M)
MARKER_RE = re.compile(r"^LVSGEN-VM-[A-Z]+\b.*$\n?", re.M)


def cache_root() -> Path:
    return Path(os.environ.get("LVSGEN_VM_CACHE") or REPO / ".cache" / "vm")


@lru_cache(maxsize=1)
def kernel_version() -> str | None:
    """Kernel ABI version the linux-image-amd64 metapackage points at (e.g. 6.1.0-56-amd64)."""
    try:
        out = subprocess.run(["apt-cache", "depends", KERNEL_METAPACKAGE],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"Depends: linux-image-(\S+)", out)
    return m.group(1) if m else None


def image_stamp() -> str:
    """Must match STAMP computed by build-image.sh (sha256 of the script + guest-init.sh)."""
    return hashlib.sha256(BUILD_SCRIPT.read_bytes() + GUEST_INIT.read_bytes()).hexdigest()


def image_dir() -> Path | None:
    """The built image for the current kernel version, or None (missing or outdated)."""
    kver = kernel_version()
    if not kver:
        return None
    d = cache_root() / kver
    try:
        ok = ((d / "vmlinuz").stat().st_size > 0 and (d / "base.cpio.gz").stat().st_size > 0
              and (d / "STAMP").read_text().strip() == image_stamp())
    except OSError:
        return None
    return d if ok else None


def ensure_image() -> Path:
    """Build the image if needed (downloads ~70 MB once, ~20 s); returns its directory."""
    p = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(p.stdout.strip().splitlines()[-1])


def kvm_usable() -> bool:
    """Is /dev/kvm usable for booting a stock Debian kernel?

    Rule: KVM only if /dev/kvm exists, is read/writable by us, and the KVM provider is not
    nested PVM (module kvm_pvm, as on some cloud sandboxes): stock kernels hang under it.
    Anything else (including unknown) falls back to TCG, which is slower but always works.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    if Path("/sys/module/kvm_pvm").exists():
        return False
    try:
        if re.search(r"^kvm_pvm\s", Path("/proc/modules").read_text(), re.M):
            return False
    except OSError:
        pass
    return True


def accel_args() -> tuple[str, list[str]]:
    """qemu accelerator: LVSGEN_VM_ACCEL=kvm|tcg forces one; unset/auto uses kvm_usable()."""
    want = os.environ.get("LVSGEN_VM_ACCEL", "auto").lower()
    if want == "kvm" or (want == "auto" and kvm_usable()):
        return "kvm", ["-accel", "kvm", "-cpu", "host"]
    return "tcg", ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]


def skip_reason() -> str | None:
    """Why VM tests cannot run here, phrased as how to fix it; None if they can."""
    if not shutil.which(QEMU):
        return (f"{QEMU} not found: apt-get install --no-install-recommends qemu-system-x86")
    if not shutil.which("apt-cache"):
        return "apt-cache not found: the VM tests need a Debian/Ubuntu host (kernel via apt)"
    if kernel_version() is None:
        return f"cannot resolve {KERNEL_METAPACKAGE} with apt-cache: run apt-get update"
    if image_dir() is None:
        return f"VM image not built or outdated: run {BUILD_SCRIPT.relative_to(REPO)}"
    return None


@dataclasses.dataclass
class VMRun:
    rc: int | None          # guest test exit status; None if the VM died or timed out
    output: str             # what run.sh printed (result channel without LVSGEN-VM-* lines)
    result: str             # raw result channel (2nd serial port)
    console: str            # kernel + /init console (1st serial port)
    wall: float             # seconds, qemu start to exit
    accel: str              # "tcg" or "kvm"
    timed_out: bool = False  # the host killed qemu after `timeout` seconds
    qemu_rc: int | None = None
    qemu_stderr: str = ""
    max_rss_kb: int = 0     # peak resident memory of the qemu process
    markers: dict[str, float] = dataclasses.field(default_factory=dict)  # guest uptimes

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def summary(self) -> str:
        return (f"VM rc={self.rc} accel={self.accel} wall={self.wall:.1f}s "
                f"qemu_rc={self.qemu_rc} timed_out={self.timed_out} "
                f"rss={self.max_rss_kb // 1024}MB markers={self.markers}")

    def diagnostics(self, tail: int = 6000) -> str:
        """Everything useful for an assertion message."""
        return (f"{self.summary()}\n--- test output (tail)\n{self.output[-tail:]}"
                f"\n--- console (tail)\n{self.console[-tail // 2:]}"
                + (f"\n--- qemu stderr\n{self.qemu_stderr}" if self.qemu_stderr else ""))


# Kernel command line. Besides console/init: things that only cost time under TCG and do not
# matter for network tests (CPU-bug mitigations, the W+X page check, audit, AppArmor).
KERNEL_ARGS = ("console=ttyS0 8250.nr_uarts=2 panic=-1 quiet loglevel=3 rdinit=/init "
               "mitigations=off rodata=off audit=0 apparmor=0 no_timer_check")


def kernel_image(img: Path) -> Path:
    """The uncompressed PVH vmlinux if built (qemu boots it directly, skipping the guest's
    xz decompression: seconds under TCG), else the bzImage. LVSGEN_VM_PVH=0 forces vmlinuz."""
    pvh = img / "vmlinux"
    if pvh.is_file() and os.environ.get("LVSGEN_VM_PVH", "1") != "0":
        return pvh
    return img / "vmlinuz"


def _virtfs_path(p: Path) -> str:
    return str(p).replace(",", ",,")  # qemu option escaping


def boot(test_dir: Path, timeout: int = 600, *, env: dict[str, str] | None = None,
         memory_mb: int | None = None, smp: int | None = None) -> VMRun:
    """Boot the VM and run ``test_dir/run.sh`` in it as /test/run.sh.

    ``test_dir`` is shared writable: files the guest writes to /test end up there.
    ``timeout`` bounds the whole VM (the guest kills its test after timeout - 60 s, so that it
    can still report). ``env`` adds variables to run.sh's otherwise clean environment; these are
    always set: LVSGEN_VM=1, LVSGEN_GUESTLIB (dir of guest/lib.sh), LVSGEN_REPO,
    LVSGEN_HOST_PYTHON (the interpreter running this code; the host root is visible).
    """
    test_dir = Path(test_dir).resolve()
    run_sh = test_dir / "run.sh"
    if not (run_sh.is_file() and os.access(run_sh, os.X_OK)):
        raise FileNotFoundError(f"{run_sh} missing or not executable")
    img = image_dir()
    if img is None:
        raise RuntimeError(skip_reason() or "VM image missing")
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise RuntimeError(skip_reason())

    genv = {"LVSGEN_GUESTLIB": str(GUEST_LIB), "LVSGEN_REPO": str(REPO),
            "LVSGEN_HOST_PYTHON": sys.executable, **(env or {})}
    (test_dir / ENV_FILE).write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in genv.items()))

    # the guest's own deadline starts after boot (~10-30 s under TCG) and must fire first
    guest_timeout = timeout - 60 if timeout >= 120 else max(timeout // 2, 5)
    accel, acc = accel_args()
    mem = memory_mb or int(os.environ.get("LVSGEN_VM_MEM", "1024"))
    cpus = smp or int(os.environ.get("LVSGEN_VM_SMP", str(min(os.cpu_count() or 1, 4))))
    with tempfile.TemporaryDirectory(prefix="lvsgen-vm-") as tmp:
        con, res, err = Path(tmp, "console.log"), Path(tmp, "result.log"), Path(tmp, "qemu.err")
        cmd = [qemu, *acc, "-M", "q35", "-m", str(mem), "-smp", str(cpus),
               "-nodefaults", "-display", "none", "-no-reboot",
               "-kernel", str(kernel_image(img)), "-initrd", str(img / "base.cpio.gz"),
               "-append", (f"{KERNEL_ARGS} lvsgen.timeout={guest_timeout} "
                           + os.environ.get("LVSGEN_VM_APPEND", "")).strip(),
               "-serial", f"file:{con}", "-serial", f"file:{res}",
               "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,"
                          "readonly=on,multidevs=remap",
               "-virtfs", f"local,path={_virtfs_path(test_dir)},mount_tag=lvsgentest,"
                          "security_model=none,multidevs=remap"]
        start = time.monotonic()
        with open(err, "wb") as errf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        timed_out = threading.Event()
        lock = threading.Lock()
        reaped = False

        def _kill() -> None:
            with lock:
                if not reaped:
                    timed_out.set()
                    os.kill(proc.pid, 9)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # wait4: we want qemu's own peak RSS
            with lock:
                reaped = True
                proc.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            _kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            (test_dir / ENV_FILE).unlink(missing_ok=True)
        wall = time.monotonic() - start

        def _read(p: Path) -> str:
            try:
                return p.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
            except OSError:
                return ""

        result, console, qerr = _read(res), _read(con), _read(err)

    m = RESULT_RE.search(result) or RESULT_RE.search(console)
    markers = {k.lower(): float(v) for k, v in
               re.findall(r"^LVSGEN-VM-([A-Z]+)\b.*?uptime=([\d.]+)", console + "\n" + result, re.M)}
    return VMRun(rc=int(m.group(1)) if m and not timed_out.is_set() else None,
                 output=MARKER_RE.sub("", result), result=result, console=console, wall=wall,
                 accel=accel, timed_out=timed_out.is_set(), qemu_rc=proc.returncode,
                 qemu_stderr=qerr, max_rss_kb=usage.ru_maxrss, markers=markers)


def _main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    reason = skip_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    run = boot(Path(argv[1]), int(argv[2]) if len(argv) == 3 else 600)
    sys.stdout.write(run.output)
    print(run.summary(), file=sys.stderr)
    if run.rc is None:
        print(run.console[-4000:], file=sys.stderr)
    return 99 if run.rc is None else run.rc


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
