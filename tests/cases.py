"""Where the golden cases live, shared by the tests and tests/regen.py.

tests/cases/<name>/ holds exactly one *.json input (often a symlink to examples/) and the
expected tree under expected/, and what `lvsgen show` prints for it under show/ (SHOW: file
name -> extra arguments). tests/errors/<name>/ holds an invalid input plus the exact
stderr and exit code lvsgen must give for it.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"
ERRORS = ROOT / "tests" / "errors"
REGEN = "python tests/regen.py"
SHOW = {"show.txt": (), "show.json": ("--json",)}


def case_input(case: Path) -> Path:
    inputs = sorted(case.glob("*.json"))
    if len(inputs) != 1:
        raise RuntimeError(f"{case} must hold exactly one *.json input, found {len(inputs)}")
    return inputs[0]


def golden_cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


def error_cases() -> list[Path]:
    return sorted(p for p in ERRORS.iterdir() if p.is_dir())


def lvsgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, as a user would: python -m lvsgen ..."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LVSGEN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "lvsgen", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below folder: relative path -> (bytes, permission bits)."""
    out: dict[str, tuple[bytes, int]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[path.relative_to(folder).as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out


USER_DATA = "cloud-init.yaml.gz"


def user_data(host: Path) -> str:
    """A host folder's cloud-init user-data, uncompressed: the YAML cloud-init reads."""
    return gzip.decompress((host / USER_DATA).read_bytes()).decode("utf-8")
