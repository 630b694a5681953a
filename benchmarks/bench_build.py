"""Benchmark `lvsgen build` on a large synthetic cluster, and the cold start on the seed.

    python benchmarks/bench_build.py [--runs N] [--scale N]

The cluster: 50 directors, 500 real-server hosts, 2,000 services, 20,000 real-server
entries, times --scale (--scale 10: 500 directors, 5,000 real-server hosts, 200,000 entries). Documentation IPv4 space (3 x /24) cannot hold that many hosts and VIPs, so it
uses 2001:db8::/32: director d owns 2001:db8:0:d::/64 with its 10 real servers (DR needs
one L2 segment), 8 VIPs and 5 ports per VIP, each service with all 10 of its real servers.
Targets: under 2 s and under 200 MB at scale 1, under 10 s and under 300 MB at scale 10, and
every host's user-data at most 65,535 bytes after base64 (what OpenStack and vSphere take).
Each time is the median of --runs cold processes (the large build: its first run into an
empty folder, then the median of the rebuilds, which compare and change nothing); CPU time
(user + system) is given beside wall time, as it is steadier on a loaded machine. The cold
start is paired with a typer hello-world that imports jinja2 and jsonschema (the floor),
with lvsgen's bytecode compiled (as pip install leaves it) and without; peak memory is the largest of the
children's maximum resident set sizes. The output is measured twice: its apparent size (the
bytes of every file) and its disk usage (du: a hard-linked file counts once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER_DATA_LIMIT = 65_535  # bytes after base64: OpenStack's and vSphere's limit
DIRECTORS, RS_PER_DIRECTOR, VIPS_PER_DIRECTOR, PORTS = 50, 10, 8, (80, 443, 8080, 8443, 9000)


def synthetic_cluster(scale: int = 1) -> dict:
    hosts: dict = {}
    vips: dict = {}
    for d in range(DIRECTORS * scale):
        net = f"2001:db8:0:{d + 1:x}"
        lb = f"lb{d:02d}"
        hosts[lb] = {"role": "director", "interface": "eth0", "address": f"{net}::1/64"}
        members = []
        for r in range(RS_PER_DIRECTOR):
            name = f"rs{d:02d}-{r}"
            hosts[name] = {"role": "real-server", "interface": "eth0", "address": f"{net}::{0x10 + r:x}/64"}
            members.append(name)
        for v in range(VIPS_PER_DIRECTOR):
            vips[f"vip{d:02d}-{v}"] = {
                "address": f"{net}::{0x100 + v:x}",
                "director": lb,
                "services": [
                    {
                        "port": port,
                        "scheduler": "wrr",
                        "forwarding": "dr",
                        "real_servers": [{"host": m, "weight": 1 + i % 5} for i, m in enumerate(members)],
                    }
                    for port in PORTS
                ],
            }
    return {"cluster": "bench", "hosts": hosts, "vips": vips}


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one cold child process.
    CPU time is the steadier figure on a loaded machine: it does not count waiting for a core."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the command so that ru_maxrss is its own
        os.chdir(cwd)
        # This checkout's lvsgen, whatever else is installed (an editable install elsewhere).
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        os.environ.update(env or {})
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def median_of(runs: int, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    samples = [timed(cmd, cwd, env) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples), max(s[2] for s in samples)


# The floor of a cold start: a typer command that imports what lvsgen's stack imports.
HELLO = """import typer, jinja2, jsonschema
app = typer.Typer()
@app.command()
def build(cluster: str, output: str = "out") -> None:
    print(cluster, output)
app()
"""


def paired(runs: int, a: list[str], b: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, float]:
    """Medians of runs alternating a and b: (a wall, a CPU, b wall, b CPU)."""
    sa, sb = [], []
    for _ in range(runs):
        sa.append(timed(a, cwd, env))
        sb.append(timed(b, cwd, env))
    med = statistics.median
    return med(x[0] for x in sa), med(x[1] for x in sa), med(x[0] for x in sb), med(x[1] for x in sb)


def du(path: Path, *extra: str) -> int:
    """Bytes under path as du counts them (each inode once)."""
    out = subprocess.run(["du", "-s", "--block-size=1", *extra, str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def output_figures(out: Path) -> str:
    sizes = [os.lstat(os.path.join(root, n)).st_size for root, _, names in os.walk(out) for n in names]
    apparent, disk = du(out, "--apparent-size"), du(out)
    return (f"{len(sizes)} files, {sum(sizes) / 1e6:.1f} MB in all (each name counted, what cp -r copies), "
            f"{apparent / 1e6:.1f} MB apparent and {disk / 1e6:.1f} MB on disk (du, each inode once)")


def largest_user_data(out: Path) -> tuple[str, int, int]:
    """(host, raw bytes, bytes after base64) of the largest cloud-init user-data."""
    sizes = [(p.stat().st_size, p.parent.name) for p in out.glob("*/cloud-init.yaml*")]
    raw, host = max(sizes)
    return host, raw, 4 * ((raw + 2) // 3)  # the length base64 gives


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=int, default=1, help="Multiply the cluster (10: 500 directors, 200,000 entries).")
    parser.add_argument("--no-seed", action="store_true", help="Skip the seed build and the bare imports.")
    args = parser.parse_args()
    lvsgen = [sys.executable, "-m", "lvsgen"]
    limits = {1: (2, 200), 10: (10, 300)}.get(args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        doc = synthetic_cluster(args.scale)
        (work / "big.json").write_text(json.dumps(doc, indent=1))
        entries = sum(len(s["real_servers"]) for v in doc["vips"].values() for s in v["services"])
        services = sum(len(v["services"]) for v in doc["vips"].values())
        directors = sum(1 for h in doc["hosts"].values() if h["role"] == "director")
        print(f"synthetic cluster (scale {args.scale}): {directors} directors, {len(doc['hosts']) - directors} real-server hosts, "
              f"{services} services, {entries} real-server entries")
        fresh, fresh_cpu, rss1 = timed([*lvsgen, "build", "big.json", "-o", "out"], work)
        wall, cpu, rss = median_of(args.runs, [*lvsgen, "build", "big.json", "-o", "out"], work)
        rss = max(rss, rss1)
        ok = max(fresh, wall) < limits[0] and rss < limits[1] if limits else False
        target = f"  [target < {limits[0]} s, < {limits[1]} MB: {verdict(ok)}]" if limits else ""
        print(f"large build:   fresh (empty output) {fresh:.2f} s wall, {fresh_cpu:.2f} s CPU; "
              f"rebuild (median of {args.runs}) {wall:.2f} s wall, {cpu:.2f} s CPU; {rss:.0f} MiB peak RSS{target}")
        print(f"output:        {output_figures(work / 'out')}")
        host, raw, b64 = largest_user_data(work / "out")
        print(f"user-data:     largest {host}: {raw} bytes, {b64} after base64"
              f"  [target <= {USER_DATA_LIMIT}: {verdict(b64 <= USER_DATA_LIMIT)}]")
        if args.no_seed:
            return 0
        (work / "hello.py").write_text(HELLO)
        seed = [*lvsgen, "build", str(ROOT / "examples/seed-dr.json"), "-o", "seed"]
        hello = [sys.executable, "hello.py", "x"]
        # With bytecode, as `pip install .` leaves lvsgen (it compiles every module): compiled
        # into the checkout's __pycache__ folders (ignored by git); and without, as an editable
        # install under PYTHONDONTWRITEBYTECODE runs it (every module compiled on every start).
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lvsgen")], check=True, stdout=subprocess.DEVNULL)
        nobytecode = {"PYTHONDONTWRITEBYTECODE": "1"}
        runs = max(args.runs, 10)
        for label in ("with bytecode", "no bytecode"):
            if label == "no bytecode":
                for folder in (ROOT / "lvsgen").rglob("__pycache__"):
                    shutil.rmtree(folder)
            env = nobytecode
            fw, fc, lw, lc = paired(runs, hello, seed, work, env)
            print(f"cold start ({label}, paired medians of {runs}): seed build {lw:.3f} s wall, {lc:.3f} s CPU; "
                  f"typer hello-world {fw:.3f} s wall, {fc:.3f} s CPU; ratio {lw / fw:.2f} wall, {lc / fc:.2f} CPU"
                  + ("  [target <= 1.2]" if label == "with bytecode" else ""))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
