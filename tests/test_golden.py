"""Golden trees: regenerate each case through the real CLI and compare both ways, bytes and mode."""

from __future__ import annotations

import difflib
import gzip
from pathlib import Path

import pytest

from cases import REGEN, case_input, golden_cases, lvsgen, tree


def _diff(name: str, want: bytes, got: bytes) -> str:
    if name.endswith(".gz"):  # the user-data: shown as the YAML it uncompresses to
        want, got = gzip.decompress(want), gzip.decompress(got)
    return "".join(
        difflib.unified_diff(
            want.decode(errors="replace").splitlines(keepends=True),
            got.decode(errors="replace").splitlines(keepends=True),
            fromfile=f"expected/{name}",
            tofile=f"generated/{name}",
        )
    )


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_golden_tree(case: Path, tmp_path: Path) -> None:
    run = lvsgen("build", str(case_input(case)), "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "", "build prints nothing on stdout unless asked"
    want, got = tree(case / "expected"), tree(tmp_path / "out")
    problems = []
    for name in sorted(set(want) - set(got)):
        problems.append(f"missing: {name}")
    for name in sorted(set(got) - set(want)):
        problems.append(f"extra: {name}")
    for name in sorted(set(want) & set(got)):
        if want[name][0] != got[name][0]:
            problems.append(_diff(name, want[name][0], got[name][0]))
        if want[name][1] != got[name][1]:
            problems.append(f"mode of {name}: expected {want[name][1]:o}, generated {got[name][1]:o}")
    assert not problems, "\n".join(problems) + f"\n\nIf the change is intended, regenerate with: {REGEN}\nand read the diff before committing it."


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_build_is_deterministic(case: Path, tmp_path: Path) -> None:
    for n in (1, 2):
        assert lvsgen("build", str(case_input(case)), "-o", str(tmp_path / f"o{n}")).returncode == 0
    assert tree(tmp_path / "o1") == tree(tmp_path / "o2")


def test_scripts_are_executable_and_nothing_else_is() -> None:
    for case in golden_cases():
        for name, (_, mode) in tree(case / "expected").items():
            assert mode == (0o755 if name.endswith("/setup.sh") else 0o644), name


def test_seed_rules_reproduce_the_walkthrough() -> None:
    rules = (Path(__file__).parent / "cases/seed-dr/expected/lb/etc/lvsgen/ipvsadm.rules").read_text()
    assert rules == "-A -t 123.234.1.101:80 -s rr\n-a -t 123.234.1.101:80 -r 123.234.1.111:80 -g -w 1\n"
