"""Smoke test of the real-kernel VM test bed: boots the qemu guest once and checks a
hand-made LVS-DR cluster in network namespaces (see smoke/run.sh).

Skips (with the fix in the reason) when qemu or the VM image is missing; set
LVSGEN_VM_BUILD=1 to build the image on demand instead (one ~70 MB download).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm  # noqa: E402

pytestmark = pytest.mark.vm

SMOKE = Path(__file__).resolve().parent / "smoke"
EXPECTED_RULES = """\
-A -t 192.0.2.100:80 -s rr
-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1
-a -t 192.0.2.100:80 -r 192.0.2.12:80 -g -w 1
"""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if os.environ.get("LVSGEN_VM_BUILD") == "1" and shutil.which(vm.QEMU):
        vm.ensure_image()
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    test_dir = tmp_path_factory.mktemp("vm-smoke")
    shutil.copy2(SMOKE / "run.sh", test_dir / "run.sh")
    run = vm.boot(test_dir, timeout=600)
    print(run.summary())
    return run, test_dir / "out"


def test_vm_completes(smoke_run):
    run, _ = smoke_run
    assert run.rc is not None, run.diagnostics()
    assert "LVSGEN-VM-RESULT" in run.result, run.diagnostics()


def test_vm_checks_pass(smoke_run):
    run, _ = smoke_run
    checks = re.findall(r"^(PASS|FAIL): (.*)$", run.output, re.M)
    assert checks, run.diagnostics()
    failed = [name for status, name in checks if status == "FAIL"]
    assert not failed, "\n".join(failed) + "\n" + run.diagnostics()
    assert run.rc == 0, run.diagnostics()


def test_vm_rules_round_trip(smoke_run):
    run, out = smoke_run
    assert (out / "rules").read_text() == EXPECTED_RULES
    assert (out / "saved").read_text() == EXPECTED_RULES, run.diagnostics()
