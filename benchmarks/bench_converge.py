"""Benchmark how fast a director's generated setup.sh converges the IPVS table, in the VM.

    python3 benchmarks/bench_converge.py [--services N] [--big] [--vips K] [--trace]

Everything is measured inside lvsgen's real-kernel test VM (tests/vm), in one boot, as ratios
against the kernel's own tool: the yardstick Y is the wall time of
`ipvsadm-restore < etc/lvsgen/ipvsadm.rules` on an empty table (median of --yardstick runs).
The steps, in order, on one director (network namespace "lb", its own hostname):

    first          tree A's setup.sh on an empty table                target <= 1.2 Y
    second         A again, nothing changed                            target <= 0.5 Y
    third          A once more, nothing changed (the steady state)     target <= 0.5 Y
    dry-converged  A --dry-run on the converged table                  must exit 0
    dry-weight     B --dry-run (one weight changed), before applying   must exit 2
    weight         B's setup.sh: one real server's weight changed      target <= 0.1 Y
    add            C's setup.sh: B plus one real server                reported

The cluster: N services (default 1,000; --big: 5,000) of 2 DR real servers each, on K VIPs
(default 4) from 198.51.100.0/24 and 203.0.113.0/24 with ports 1..ceil(N/K); the real
servers are bare addresses (not managed hosts) from 192.0.2.0/24, the director's network.
After every step the live table (`ipvsadm -S -n`, sorted) must equal the sorted rules file
of the tree just applied (for the dry runs: the tree applied before). Each step starts
--pause seconds (default 3) after the one before, as runs on a real host are minutes apart:
setup.sh does not keep the sum of a file written within 2 s of it, so back-to-back runs would
sum every file the run before wrote.

Exit status: 0 when every run did what it must (exit status, table); 1 otherwise. A missed
target is reported, not a failure. --trace adds a second, diagnostic boot that runs every
setup.sh under `bash -x` with a timestamped PS4 and prints where the time goes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUEST_SCRIPT = Path(__file__).resolve().parent / "converge-guest.sh"
sys.path.insert(0, str(ROOT / "tests" / "vm"))
import vm  # noqa: E402  (the test bed's qemu launcher)

DIRECTOR, IFACE, DIP = "lb", "eth0", "192.0.2.1/24"
RS_POOL = [f"192.0.2.{11 + i}" for i in range(20)]  # real servers, on the director's /24
ADDED_RS = "192.0.2.200"  # the real server tree C adds
VIP_NETS = ("198.51.100", "203.0.113")

# name, tree, args, expected exit status, tree whose rules the table must equal afterwards,
# target (ratio to Y) or None, description
STEPS = [
    ("first", "A", [], 0, "A", 1.2, "first run, empty table"),
    ("second", "A", [], 0, "A", 0.5, "second run, nothing changed"),
    # The second run sums every file the first one wrote (their signatures are new); later runs
    # with nothing to change read the sums kept per boot: the steady state.
    ("third", "A", [], 0, "A", 0.5, "third run, nothing changed"),
    ("dry-converged", "A", ["--dry-run"], 0, "A", None, "--dry-run, converged (must exit 0)"),
    ("dry-weight", "B", ["--dry-run"], 2, "A", None, "--dry-run, weight changed (must exit 2)"),
    ("weight", "B", [], 0, "B", 0.1, "one weight changed"),
    ("add", "C", [], 0, "C", None, "one real server added"),
]


# --- the clusters -------------------------------------------------------------------------------
def vip_addresses(k: int) -> list[str]:
    if not 1 <= k <= 2 * 240:
        raise SystemExit("--vips must be between 1 and 480")
    return [f"{VIP_NETS[i % 2]}.{10 + i // 2}" for i in range(k)]


def cluster(services: int, vips: int, rs_per_service: int, variant: str) -> dict:
    """A: the base cluster. B: A with one real server's weight changed. C: B plus one real
    server in that same service."""
    addresses = vip_addresses(vips)
    per_vip: list[list[dict]] = [[] for _ in addresses]
    for i in range(services):
        members = [RS_POOL[(i * rs_per_service + j) % len(RS_POOL)] for j in range(rs_per_service)]
        per_vip[i % vips].append({
            "protocol": "tcp",
            "port": i // vips + 1,
            "scheduler": "wrr",
            "forwarding": "dr",
            "real_servers": [{"address": a, "weight": 1 + (i + j) % 3} for j, a in enumerate(members)],
        })
    # the service changed in B and C: the middle one, so that it is neither first nor last
    changed = per_vip[(services // 2) % vips][(services // 2) // vips]
    if variant in ("B", "C"):
        changed["real_servers"][0]["weight"] += 10
    if variant == "C":
        changed["real_servers"].append({"address": ADDED_RS, "weight": 2})
    return {
        "cluster": "bench-converge",
        "hosts": {DIRECTOR: {"role": "director", "interface": IFACE, "address": DIP}},
        "vips": {
            f"v{n}": {"address": a, "director": DIRECTOR, "services": per_vip[n]}
            for n, a in enumerate(addresses)
        },
    }


def build(work: Path, args: argparse.Namespace) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for variant in "ABC":
        # The same file name and cluster name for all three: the generated files' headers name
        # them, and only the weight (and, in C, the added real server) may differ.
        src = work / "src" / variant / "cluster.json"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(json.dumps(cluster(args.services, args.vips, args.rs_per_service, variant), indent=1))
        out = work / "trees" / variant
        p = subprocess.run([sys.executable, "-m", "lvsgen", "build", str(src), "-o", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"lvsgen build {src} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


def has_engine(work: Path) -> bool:
    return (work / "trees" / "A" / DIRECTOR / "lvsgen.sh").is_file()


# --- the host's load: another VM on the same CPUs distorts the figures --------------------------
def other_qemus() -> int:
    """qemu processes running on this machine besides ours (read from /proc only)."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                if Path(f"/proc/{pid}/comm").read_text().startswith("qemu-system"):
                    n += 1
            except OSError:
                pass
    return n


def wait_idle(limit: float) -> None:
    """Wait up to `limit` seconds for no other qemu and a 1-minute load under 1."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (other_qemus() or os.getloadavg()[0] >= 1.0):
        print(f"waiting for an idle host: {other_qemus()} other qemu, load {os.getloadavg()[0]:.1f}", flush=True)
        time.sleep(15)


class LoadSampler(threading.Thread):
    """Samples the host's 1-minute load and the other qemu processes while our VM runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.loads: list[float] = []
        self.qemus: list[int] = []

    def run(self) -> None:
        while not self.stop.wait(5):
            self.loads.append(os.getloadavg()[0])
            self.qemus.append(max(other_qemus() - 1, 0))  # minus our own VM

    def summary(self) -> dict:
        return {"load_max": max(self.loads, default=os.getloadavg()[0]),
                "load_mean": statistics.mean(self.loads) if self.loads else os.getloadavg()[0],
                "other_qemu_max": max(self.qemus, default=0), "cpus": os.cpu_count()}


# --- the VM run ---------------------------------------------------------------------------------
def boot(work: Path, args: argparse.Namespace, trace: bool, steps: list) -> tuple[vm.VMRun, dict]:
    shutil.copy(GUEST_SCRIPT, work / "run.sh")
    os.chmod(work / "run.sh", 0o755)
    cfg = {
        "DIRECTOR": DIRECTOR, "HOSTNAME": DIRECTOR, "IFACE": IFACE, "ADDRESS": DIP,
        "TREES": "A B C",
        "STEPS": " ".join(f"{n}:{t}:{'+'.join(a) or '-'}:{rc}:{tt}" for n, t, a, rc, tt, _, _ in steps),
        "YARDSTICK_N": str(args.yardstick),
        "TRACE": "1" if trace else "0",
        "PAUSE": str(args.pause),
    }
    (work / "bench.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in cfg.items()))
    (work / "results.json").unlink(missing_ok=True)
    shutil.rmtree(work / "out", ignore_errors=True)
    if args.wait_idle:
        wait_idle(args.wait_idle)
    sampler = LoadSampler()
    sampler.start()
    try:
        run = vm.boot(work, timeout=args.timeout)
    finally:
        sampler.stop.set()
    run.host_load = sampler.summary()  # type: ignore[attr-defined]
    try:
        results = json.loads((work / "results.json").read_text())
    except (OSError, ValueError):
        results = {}
    return run, results


# --- the report ---------------------------------------------------------------------------------
def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def report(run: vm.VMRun, res: dict, steps: list, args: argparse.Namespace) -> tuple[bool, dict]:
    """Prints the table; returns (every run did what it must, summary)."""
    ok = True
    problems: list[str] = []
    ys = res.get("yardstick", [])
    for i, y in enumerate(ys, 1):
        if y["rc"] != 0 or y["table"] != "match":
            ok = False
            problems.append(f"yardstick run {i}: ipvsadm-restore exit {y['rc']}, table {y['table']}")
    if not ys:
        ok = False
        problems.append("no yardstick figures: the guest did not get that far")
    y_med = statistics.median(y["seconds"] for y in ys) if ys else None
    info = res.get("info", {})
    print(f"\nlvsgen setup.sh convergence, {args.services} services x {args.rs_per_service} real servers (DR), "
          f"{args.vips} VIPs, {info.get('rules_lines', '?')} rules lines")
    print(f"VM: accel={run.accel} kernel={info.get('kernel', '?')} cpus={info.get('cpus', '?')} "
          f"wall={run.wall:.0f}s rc={run.rc}; {info.get('ipvsadm', '')}; bash {info.get('bash', '')}")
    engine = getattr(args, "engine", None)
    if engine:
        print(f"engine: {engine}")
    hl = getattr(run, "host_load", None)
    if hl:
        busy = hl["other_qemu_max"] > 0 or hl["load_max"] > hl["cpus"]
        print(f"host while the VM ran: load mean {hl['load_mean']:.1f} max {hl['load_max']:.1f} on {hl['cpus']} CPUs, "
              f"up to {hl['other_qemu_max']} other qemu" + ("  <- BUSY HOST: figures are noisy" if busy else ""))
    if ys:
        print("yardstick runs (s): " + ", ".join(f"{y['seconds']:.3f}" for y in ys))
    reads = res.get("reads", {})
    if reads:
        print("reading the full table (median of 3): ipvsadm -S -n %.3f s, cat /proc/net/ip_vs %.3f s"
              % (statistics.median(reads["save"]), statistics.median(reads["proc"])))
        if "bash" in reads:
            print("floors (median of 3): bash -c : %.3f s, /bin/true %.3f s, one 'ipvsadm -e' %.3f s"
                  % tuple(statistics.median(reads[k]) for k in ("bash", "true", "edit")))
            # The least any setup.sh can cost for one weight change: start bash, read the live
            # table once (to know what differs), run one ipvsadm. Below this no target is reachable.
            least = sum(statistics.median(reads[k]) for k in ("bash", "edit", "proc"))
            if y_med:
                print("floor of a one-line change (bash start + one read of /proc + one 'ipvsadm -e'): "
                      f"{least:.3f} s = {least / y_med:.3f} Y")
    hdr = f"{'step':<15} {'what':<40} {'seconds':>8} {'x Y':>7} {'target':>7} {'met':>5} {'rc':>6} {'table':>6}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    print(f"{'yardstick':<15} {'ipvsadm-restore, empty table (median)':<40} {fmt(y_med):>8} {fmt(1.0 if y_med else None, '.2f'):>7}")
    summary = {"yardstick": y_med, "steps": {}}
    by_name = {s["name"]: s for s in res.get("steps", [])}
    for name, _tree, _a, expect, _tt, target, what in steps:
        s = by_name.get(name)
        if s is None or s.get("seconds") is None:
            ok = False
            problems.append(f"{name}: did not run")
            print(f"{name:<15} {what:<40} {'-':>8}")
            continue
        ratio = s["seconds"] / y_med if y_med else None
        met = None if target is None or ratio is None else ratio <= target
        rc_ok = s["rc"] == expect
        table_ok = s["table"] == "match"
        if not (rc_ok and table_ok):
            ok = False
            problems.append(f"{name}: exit {s['rc']} (must be {expect}), table {s['table']}")
        summary["steps"][name] = {"seconds": s["seconds"], "ratio": ratio, "target": target, "met": met,
                                  "rc": s["rc"], "expected_rc": expect, "table": s["table"]}
        print(f"{name:<15} {what:<40} {s['seconds']:>8.3f} {fmt(ratio, '.2f'):>7} "
              f"{('<= %.1f' % target) if target else '':>7} {'' if met is None else ('yes' if met else 'NO'):>5} "
              f"{('%d' % s['rc']) + ('' if rc_ok else '!'):>6} {s['table']:>6}")
    missed = [n for n, v in summary["steps"].items() if v["met"] is False]
    print("\ntargets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    if run.rc != 0:
        ok = False
        problems.append(f"the guest script failed: {run.summary()}")
    for name, s in by_name.items():
        if s.get("rc") != s.get("expected_rc") or s.get("table") != "match":
            print(f"\n--- {name}: setup.sh output (last lines; {s.get('output_lines')} lines in all)\n{s.get('output_tail', '')}")
            if s.get("table_diff"):
                diff = s["table_diff"].splitlines()
                more = f"\n  ... (see out/{name}.diff)" if len(diff) > 12 else ""
                print(f"--- {name}: table diff (< rules file, > live)\n" + "\n".join(diff[:12]) + more)
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        if not res:
            print(run.diagnostics())
    return ok, summary


# --- the diagnostic (traced) run -----------------------------------------------------------------
TRACE_RE = re.compile(r"^(\++) (\d+\.\d+) (\S*):(\d+) (\S+) (.*)$")


def trace_costs(path: Path, top: int) -> str:
    """Self time per traced line and per function: each trace line is charged the time until
    the next trace line (so an external command's run time lands on its own line)."""
    entries = []
    with open(path, errors="replace") as fh:
        for line in fh:
            m = TRACE_RE.match(line.rstrip("\n"))
            if m:
                entries.append((float(m[2]), f"{m[3].rsplit('/', 1)[-1]}:{m[4]}", m[5], m[6]))
    if len(entries) < 2:
        return "  (no trace)"
    by_line: dict[str, list] = collections.defaultdict(lambda: [0.0, 0, ""])
    by_func: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for (t, where, func, cmd), nxt in zip(entries, entries[1:]):
        dt = max(nxt[0] - t, 0.0)
        e = by_line[where]
        e[0] += dt
        e[1] += 1
        if len(cmd) > len(e[2]):  # the longest command on that line names it best ('LC_ALL=C' < 'awk ...')
            e[2] = cmd
        f = by_func[func]
        f[0] += dt
        f[1] += 1
    total = entries[-1][0] - entries[0][0]
    out = [f"  traced span {total:.3f} s, {len(entries)} trace lines; self time by function:"]
    for func, (secs, n) in sorted(by_func.items(), key=lambda kv: -kv[1][0])[:top]:
        out.append(f"    {secs:8.3f} s {100 * secs / total:5.1f}%  {n:6d} lines  {func}")
    out.append("  top lines:")
    for where, (secs, n, cmd) in sorted(by_line.items(), key=lambda kv: -kv[1][0])[:top]:
        out.append(f"    {secs:8.3f} s {100 * secs / total:5.1f}%  x{n:<5d} {where:<16} {cmd[:90]}")
    return "\n".join(out)


def trace_report(work: Path, res: dict, top: int) -> None:
    print("\n=== diagnostic run under bash -x (times inflated by tracing) ===")
    for s in res.get("steps", []):
        print(f"\n{s['name']}: {fmt(s.get('seconds'))} s traced, exit {s.get('rc')}, table {s.get('table')}")
        if s.get("trace"):
            print(trace_costs(work / "out" / s["trace"], top))


# --- main ---------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000, help="virtual services (default 1000)")
    parser.add_argument("--big", action="store_true", help="5,000 services (overrides --services)")
    parser.add_argument("--vips", type=int, default=4, help="VIPs the services are spread over (default 4)")
    parser.add_argument("--rs-per-service", type=int, default=2, help="real servers per service (default 2)")
    parser.add_argument("--yardstick", type=int, default=3, help="ipvsadm-restore runs, median taken (default 3)")
    parser.add_argument("--timeout", type=int, default=1500, help="VM timeout in seconds (default 1500)")
    parser.add_argument("--trace", action="store_true", help="also a diagnostic boot under bash -x")
    parser.add_argument("--trace-only", action="store_true", help="only the diagnostic boot")
    parser.add_argument("--pause", type=float, default=3, metavar="SECONDS",
                        help="pause before each step (default 3): runs on a host are minutes apart, and setup.sh "
                             "keeps no sum of a file written within 2 s of it (README, files)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each boot, wait up to this long for no other qemu and load < 1")
    parser.add_argument("--top", type=int, default=12, help="lines per trace summary (default 12)")
    parser.add_argument("--yardstick-only", action="store_true",
                        help="measure only the yardstick (to test the bench without setup.sh)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if args.big:
        args.services = 5000
    if args.services < 2 or args.rs_per_service < 1 or args.rs_per_service > len(RS_POOL):
        parser.error("need --services >= 2 and 1 <= --rs-per-service <= %d" % len(RS_POOL))
    reason = vm.skip_reason()
    if reason:
        print(f"cannot boot the VM: {reason}", file=sys.stderr)
        return 1

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lvsgen-bench-converge-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "trees", ignore_errors=True)
    build(work, args)
    steps = [] if args.yardstick_only else STEPS
    lib = work / "trees" / "A" / DIRECTOR / "lvsgen.sh"
    if lib.is_file():
        data = lib.read_bytes()
        lines = data.count(b"\n")
        args.engine = f"lvsgen.sh {lines} lines, sha256 {hashlib.sha256(data).hexdigest()[:12]}"
    if steps and not has_engine(work):
        print("note: the built tree has no lvsgen.sh yet (old setup.sh); measuring it anyway", file=sys.stderr)
    print(f"work folder: {work}; booting the VM ({vm.accel_args()[0]}), this takes a while ...", flush=True)

    ok = True
    if not args.trace_only:
        run, res = boot(work, args, False, steps)
        ok, summary = report(run, res, steps, args)
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args) | {"workdir": str(work), "json": str(args.json)},
                                             "accel": run.accel, "host_load": getattr(run, "host_load", None),
                                             "summary": summary, "results": res},
                                            indent=1, default=str))
    if (args.trace or args.trace_only) and steps:
        tdir = work / "trace"
        shutil.rmtree(tdir, ignore_errors=True)
        shutil.copytree(work / "trees", tdir / "trees")
        run, res = boot(tdir, args, True, steps)
        print(f"\ndiagnostic boot: {run.summary()}")
        trace_report(tdir, res, args.top)
        if args.trace_only:
            ok = run.rc == 0 and all(s.get("rc") == s.get("expected_rc") for s in res.get("steps", []))
    if ok and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print(f"\n(kept {work}: out/ has every run's output and table)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
