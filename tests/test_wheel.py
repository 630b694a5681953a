"""The wheel carries its templates and schema: build it, install it into a fresh venv, and run
`lvsgen build` from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

from cases import ROOT, tree


def test_wheel_installs_and_builds_from_elsewhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], check=True, capture_output=True)
    wheels = list(dist.glob("lvsgen-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheels[0])], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "seed-dr.json").write_bytes((ROOT / "examples/seed-dr.json").read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(env_dir / "bin" / "lvsgen"), "build", "seed-dr.json", "-o", "out"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # The installed copy, not the checkout, must have served the templates: same bytes.
    assert tree(elsewhere / "out") == tree(ROOT / "tests/cases/seed-dr/expected")
    # diff sources the host engine the wheel ships; import builds back the same rules file.
    lvsgen = str(env_dir / "bin" / "lvsgen")
    rules = "out/lb/etc/lvsgen/ipvsadm.rules"
    run = subprocess.run([lvsgen, "diff", "seed-dr.json", "--host", "lb", "--live", rules], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (0, ""), run.stdout + run.stderr
    assert "no changes" in run.stdout
    run = subprocess.run([lvsgen, "import", f"lb={rules}", "--director", "lb=123.234.1.102/24", "-o", "back.json"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([lvsgen, "build", "back.json", "-o", "back"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (elsewhere / "back/lb/etc/lvsgen/ipvsadm.rules").read_bytes() == (elsewhere / rules).read_bytes()
    where = subprocess.run([str(python), "-c", "import lvsgen.resources as r; print(r.templates_dir())"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert "_data" in where.stdout and str(ROOT) not in where.stdout, where.stdout
