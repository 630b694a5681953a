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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vm  # noqa: E402
from cases import golden_cases, lvsgen  # noqa: E402

pytestmark = pytest.mark.vm

SMOKE = Path(__file__).resolve().parent / "smoke"
EXPECTED_RULES = """\
-A -t 192.0.2.100:80 -s rr
-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1
-a -t 192.0.2.100:80 -r 192.0.2.12:80 -g -w 1
"""


ORDER_CLUSTER = Path(__file__).resolve().parent / "order" / "cluster.json"


def order_rules(work: Path) -> dict[str, str]:
    """Every director's rules file: of the order cluster (services of three families and
    protocols added out of order, IPv4 and IPv6 real servers whose 32-bit words differ by more
    than 2**31, so ipvsadm's wrapping comparison shows), built now, and of every golden case."""
    out = {}
    build = lvsgen("build", str(ORDER_CLUSTER), "-o", str(work / "order"))
    assert build.returncode == 0, build.stderr
    trees = {"order": work / "order"} | {case.name: case / "expected" for case in golden_cases()}
    for case, tree in trees.items():
        for rules in sorted(tree.glob("*/etc/lvsgen/ipvsadm.rules")):
            out[f"{case}-{rules.parts[-4]}"] = rules.read_text()
    return out


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if os.environ.get("LVSGEN_VM_BUILD") == "1" and shutil.which(vm.QEMU):
        vm.ensure_image()
    reason = vm.skip_reason()
    if reason:
        pytest.skip(reason)
    test_dir = tmp_path_factory.mktemp("vm-smoke")
    shutil.copy2(SMOKE / "run.sh", test_dir / "run.sh")
    # lvsgen's rules files, for the kernel's order (see test_rules_files_are_in_the_kernels_order)
    (test_dir / "order").mkdir()
    for name, rules in order_rules(tmp_path_factory.mktemp("order-build")).items():
        (test_dir / "order" / f"{name}.rules").write_text(rules)
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


def test_rules_files_are_in_the_kernels_order(smoke_run):
    """The expectation is the kernel's: each generated rules file, loaded in scrambled order,
    comes back from ipvsadm-save -n byte for byte, in lvsgen's order (the wrap-around of
    ipvsadm's address comparison included)."""
    run, out = smoke_run
    order = out / "order"
    saved = sorted(order.glob("*.saved"))
    assert len(saved) >= 5, run.diagnostics()
    expected = order_rules(Path(str(out) + "-rebuild"))
    assert sorted(p.stem for p in saved) == sorted(expected)
    for path in saved:
        restore = (order / f"{path.stem}.restore").read_text()
        assert restore.strip() == "rc=0", f"{path.stem}: ipvsadm-restore said {restore}"
        scrambled = (order / f"{path.stem}.scrambled").read_text()
        if len(expected[path.stem].splitlines()) > 2:  # one service with one real server has one order
            assert scrambled != expected[path.stem], f"{path.stem}: the scrambled load was not scrambled"
        assert path.read_text() == expected[path.stem], f"{path.stem}: ipvsadm-save -n differs from lvsgen's order"
    wrap = expected["order-lb6"].splitlines()
    assert wrap.index("-a -t [2001:db8:ffff::100]:80 -r [2001:db8:ffff:0:ffff::11]:80 -g -w 1") < wrap.index(
        "-a -t [2001:db8:ffff::100]:80 -r [2001:db8:ffff::3]:80 -g -w 1"
    ), "the order cluster no longer shows the wrap-around"
