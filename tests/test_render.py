"""The jinja2 bytecode cache (lvsgen.render): it changes how fast a build starts, never what
it writes, and a cache that is broken or cannot be written only makes the build slower."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-dr.json"


def _build(tmp: Path, out: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "LVSGEN_NO_CACHE")}
    full.update(env, PYTHONPATH=str(ROOT))  # this checkout's lvsgen, whatever is installed
    return subprocess.run([sys.executable, "-m", "lvsgen", "build", str(SEED), "-o", str(tmp / out)],
                          capture_output=True, text=True, env=full, cwd=tmp)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_cache_is_filled_then_used_and_the_output_is_the_same(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    off = _build(tmp_path, "off", LVSGEN_NO_CACHE="1", XDG_CACHE_HOME=str(cache))
    assert off.returncode == 0, off.stderr
    assert not cache.exists(), "LVSGEN_NO_CACHE=1 writes no cache"
    first = _build(tmp_path, "first", XDG_CACHE_HOME=str(cache))
    entries = sorted(cache.rglob("*.cache"))
    assert first.returncode == 0 and entries, first.stderr
    stamps = [p.stat().st_mtime_ns for p in entries]
    second = _build(tmp_path, "second", XDG_CACHE_HOME=str(cache))
    assert second.returncode == 0, second.stderr
    assert [p.stat().st_mtime_ns for p in sorted(cache.rglob("*.cache"))] == stamps, "a warm cache is read, not rewritten"
    assert _tree(tmp_path / "off") == _tree(tmp_path / "first") == _tree(tmp_path / "second")


def test_a_corrupt_or_unwritable_cache_only_costs_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _build(tmp_path, "good", LVSGEN_NO_CACHE="1").returncode == 0
    assert _build(tmp_path, "fill", XDG_CACHE_HOME=str(cache)).returncode == 0
    for entry in cache.rglob("*.cache"):
        entry.write_bytes(b"not a jinja2 cache entry")
    corrupt = _build(tmp_path, "corrupt", XDG_CACHE_HOME=str(cache))
    assert corrupt.returncode == 0 and corrupt.stderr == "", corrupt.stderr
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be\n")
    unwritable = _build(tmp_path, "unwritable", XDG_CACHE_HOME=str(blocked))
    assert unwritable.returncode == 0 and unwritable.stderr == "", unwritable.stderr
    relative = _build(tmp_path, "relative", XDG_CACHE_HOME="not-absolute", HOME="")
    assert relative.returncode == 0 and not (tmp_path / "not-absolute").exists(), relative.stderr
    good = _tree(tmp_path / "good")
    assert _tree(tmp_path / "corrupt") == _tree(tmp_path / "unwritable") == _tree(tmp_path / "relative") == good
