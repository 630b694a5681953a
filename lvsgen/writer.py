"""Step 6: write the plan. Atomic per file, explicit modes, and only files lvsgen owns.

Each host folder gets a manifest listing the files lvsgen wrote there. On the next build,
lvsgen removes only files named in an old manifest that the new plan no longer has, and a
folder it did not create (no manifest, not empty) is refused rather than written into.
Nothing else under the output folder is ever touched.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lvsgen.errors import OutputError
from lvsgen.plan import MANIFEST, File

_MANIFEST_HEAD = "# files lvsgen wrote in this folder; on rebuild it removes only these\n"


def read_manifest(folder: Path) -> list[str] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    names = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    # Only relative paths inside the folder: a tampered manifest must not reach outside it.
    return [n for n in names if not n.startswith("/") and ".." not in Path(n).parts]


def manifest_text(files: list[File]) -> str:
    return _MANIFEST_HEAD + "".join(f"{f.path}\n" for f in sorted(files, key=lambda f: f.path))


def _unchanged(path: Path, data: bytes, mode: int) -> bool:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def atomic_write(path: Path, text: str, mode: int) -> None:
    """Write to a temporary file beside the target, set its mode, rename it into place: a
    reader sees the old file or the new one, never half of one. A file that already has
    these bytes and this mode is left alone. The folder is lvsgen's own, so a fixed
    temporary name (left over only by a crash) is safe to replace."""
    data = text.encode("utf-8")
    if _unchanged(path, data, mode):
        return
    tmp = path.with_name(f".{path.name}.lvsgen-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)  # explicit: O_CREAT's mode is filtered by the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove(folder: Path, names: list[str]) -> None:
    for name in names:
        target = folder / name
        if target.is_file() or target.is_symlink():
            target.unlink()
        parent = target.parent
        while parent != folder and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def check_writable(out: Path, hosts: list[str]) -> None:
    """Refuse, before anything is written, to write into folders lvsgen did not create."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another -o")
    for host in hosts:
        folder = out / host
        if folder.exists() and (not folder.is_dir() or (read_manifest(folder) is None and any(folder.iterdir()))):
            raise OutputError(
                f"{folder} exists and was not written by lvsgen (it has no {MANIFEST}); "
                "move it away or choose another -o"
            )


def write(out: Path, plan: dict[str, list[File]]) -> None:
    check_writable(out, sorted(plan))
    out.mkdir(parents=True, exist_ok=True)
    folders = sorted({(out / host / f.path).parent for host, files in plan.items() for f in files})
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for host in sorted(plan):
        folder = out / host
        files = plan[host]
        old = read_manifest(folder) or []
        for f in files:
            atomic_write(folder / f.path, f.text, f.mode)
        _remove(folder, sorted(set(old) - {f.path for f in files}))
        atomic_write(folder / MANIFEST, manifest_text(files), 0o644)
    # Host folders lvsgen wrote earlier for hosts that are gone: remove what it wrote there.
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in plan):
        old = read_manifest(folder)
        if old is None:
            continue
        _remove(folder, old + [MANIFEST])
        if not any(folder.iterdir()):
            folder.rmdir()
