"""Regenerate every golden file through the real CLI. Read the diff before committing it.

    python tests/regen.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import ERRORS, SHOW, error_cases, golden_cases, case_input, lvsgen  # noqa: E402


def main() -> int:
    for case in golden_cases():
        expected = case / "expected"
        if expected.exists():
            shutil.rmtree(expected)
        run = lvsgen("build", case_input(case).name, "-o", "expected", cwd=case)
        if run.returncode != 0:
            print(f"{case.name}: lvsgen build failed:\n{run.stderr}", file=sys.stderr)
            return 1
        print(f"regenerated {expected.relative_to(case.parent.parent.parent)}")
        show = case / "show"
        show.mkdir(exist_ok=True)
        for name, args in SHOW.items():
            run = lvsgen("show", case_input(case).name, *args, cwd=case)
            if run.returncode != 0:
                print(f"{case.name}: lvsgen show {' '.join(args)} failed:\n{run.stderr}", file=sys.stderr)
                return 1
            (show / name).write_text(run.stdout, encoding="utf-8")
            print(f"regenerated {(show / name).relative_to(case.parent.parent.parent)}")
    for case in error_cases():
        run = lvsgen("build", "cluster.json", "-o", "out", cwd=case)
        (case / "stderr").write_text(run.stderr, encoding="utf-8")
        (case / "exit_code").write_text(f"{run.returncode}\n", encoding="utf-8")
        if (case / "out").exists():
            print(f"{case.name}: lvsgen wrote output for an invalid input", file=sys.stderr)
            return 1
        print(f"regenerated {(case / 'stderr').relative_to(ERRORS.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
