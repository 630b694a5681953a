"""Error goldens: an invalid input gives exactly this stderr and exit code, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cases import REGEN, error_cases, lvsgen


@pytest.mark.parametrize("case", error_cases(), ids=lambda p: p.name)
def test_error_golden(case: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "cluster.json").write_bytes((case / "cluster.json").read_bytes())
    run = lvsgen("build", "cluster.json", "-o", "out", cwd=work)
    hint = f"\nIf the change is intended, regenerate with: {REGEN}"
    assert run.stderr == (case / "stderr").read_text(), run.stderr + hint
    assert run.returncode == int((case / "exit_code").read_text()), hint
    assert "Traceback" not in run.stderr
    assert not (work / "out").exists(), "an invalid input must write nothing"
    assert run.stdout == ""


@pytest.mark.parametrize("case", error_cases(), ids=lambda p: p.name)
def test_validate_agrees_with_build(case: Path) -> None:
    run = lvsgen("validate", "cluster.json", cwd=case)
    assert run.returncode == 1
    assert run.stderr == (case / "stderr").read_text()
