"""Host side of every test that runs tests/vm/cluster/driver.py in the VM: copy the driver
next to the built trees and topology.json, boot once, and hand back what the driver recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import vm

HERE = Path(__file__).resolve().parent


def run_driver(work: Path, topology: dict, timeout: int) -> tuple[vm.VMRun, dict]:
    """Boot the VM on WORK (the trees are built there already) with TOPOLOGY; returns the run
    and /test/results.json, or fails with the VM's diagnostics when the driver wrote none."""
    (work / "topology.json").write_text(json.dumps(topology, indent=1))
    for f in ("run.sh", "driver.py", "peer.py"):
        shutil.copy2(HERE / "cluster" / f, work / f)
    run = vm.boot(work, timeout=timeout)
    print(run.summary())
    results_file = work / "results.json"
    assert results_file.exists(), run.diagnostics()
    (work / "console.txt").write_text(run.output)
    return run, json.loads(results_file.read_text())
