"""Benchmark `lvsgen build` on a large synthetic cluster, and the cold start on the seed.

    python benchmarks/bench_build.py [--runs N]

The cluster: 50 directors, 500 real-server hosts, 2,000 services, 20,000 real-server
entries. Documentation IPv4 space (3 x /24) cannot hold that many hosts and VIPs, so it
uses 2001:db8::/32: director d owns 2001:db8:0:d::/64 with its 10 real servers (DR needs
one L2 segment), 8 VIPs and 5 ports per VIP, each service with all 10 of its real servers.
Targets: under 2 s and under 200 MB for the large build. Each figure is the median of
--runs cold processes; peak memory is the child's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRECTORS, RS_PER_DIRECTOR, VIPS_PER_DIRECTOR, PORTS = 50, 10, 8, (80, 443, 8080, 8443, 9000)


def synthetic_cluster() -> dict:
    hosts: dict = {}
    vips: dict = {}
    for d in range(DIRECTORS):
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


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one cold child process."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the command so that ru_maxrss is its own
        os.chdir(cwd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024


def median_of(runs: int, cmd: list[str], cwd: Path) -> tuple[float, float]:
    samples = [timed(cmd, cwd) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lvsgen = [sys.executable, "-m", "lvsgen"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        doc = synthetic_cluster()
        (work / "big.json").write_text(json.dumps(doc, indent=1))
        entries = sum(len(s["real_servers"]) for v in doc["vips"].values() for s in v["services"])
        services = sum(len(v["services"]) for v in doc["vips"].values())
        directors = sum(1 for h in doc["hosts"].values() if h["role"] == "director")
        print(f"synthetic cluster: {directors} directors, {len(doc['hosts']) - directors} real-server hosts, "
              f"{services} services, {entries} real-server entries")
        wall, rss = median_of(args.runs, [*lvsgen, "build", "big.json", "-o", "out"], work)
        files = sum(1 for p in (work / "out").rglob("*") if p.is_file())
        print(f"large build:   {wall:.3f} s wall (median of {args.runs}), {rss:.0f} MiB peak RSS, {files} files"
              f"  [target < 2 s, < 200 MB: {'ok' if wall < 2 and rss < 200 else 'MISSED'}]")
        wall2, rss2 = median_of(args.runs, [*lvsgen, "build", str(ROOT / "examples/seed-dr.json"), "-o", "seed"], work)
        base, rss0 = median_of(args.runs, [sys.executable, "-c", "import typer, jinja2, jsonschema"], work)
        print(f"seed build:    {wall2:.3f} s wall, {rss2:.0f} MiB peak RSS (cold process)")
        print(f"bare imports:  {base:.3f} s wall, {rss0:.0f} MiB peak RSS (python -c 'import typer, jinja2, jsonschema')")
        print(f"seed overhead over the bare imports: {wall2 - base:+.3f} s")
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
