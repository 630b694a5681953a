"""Step 6: write the plan. All or nothing, explicit modes, and only files lvsgen owns.

Each host folder gets a manifest listing the files lvsgen wrote there. On the next build,
lvsgen removes only files named in an old manifest that the new plan no longer has, and a
folder it did not create (no manifest, not empty) is refused rather than written into.
Nothing else under the output folder is ever touched.

A build changes the tree in two steps, so that a failure at any point (a full disk, a
rename the filesystem refuses) leaves the previous tree as it was:
1. stage: every new or changed file is written to a temporary file beside its target, with
   its mode, and every file that will be replaced gets a second name (a hard link, or a
   copy where the filesystem has none). Nothing a reader sees has changed yet; a failure
   removes what this step made.
2. commit: the temporary files are renamed into place, and the files no longer generated
   are renamed to their second name. If a rename fails, the ones already done are undone
   from the second names. Only after the last rename are the second names deleted.
A reader sees each file old or new, never half of one. A file that already has its bytes
and mode is not touched. The temporary names are lvsgen's alone: what a killed build left
of them in a host folder is removed by the next build that completes.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from lvsgen.errors import OutputError
from lvsgen.plan import MANIFEST, File

_MANIFEST_HEAD = "# files lvsgen wrote in this folder; on rebuild it removes only these\n"
# Beside each target: .NAME.lvsgen-tmp holds its new bytes, .NAME.lvsgen-old its previous
# file until the build is complete. The folder is lvsgen's own, so a fixed name (left over
# only by a crash) is safe to replace.
_NEW = ".lvsgen-tmp"
_OLD = ".lvsgen-old"


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


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{suffix}")


@dataclass
class _Change:
    """One target of a build: replaced by `new`, or (new is None) removed."""

    target: Path
    new: Path | None  # the staged file that takes the target's place
    old: Path | None = None  # the target's previous file under its second name, if it had one
    done: bool = False  # renamed: the target now shows the build's result


def _stage(change: _Change, data: bytes, mode: int) -> None:
    """Write the new bytes beside the target, with an explicit mode (O_CREAT's mode is
    filtered by the umask), and give the file it replaces a second name."""
    assert change.new is not None
    change.new.unlink(missing_ok=True)
    fd = os.open(change.new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    if change.target.is_file() or change.target.is_symlink():
        _keep(change)


def _keep(change: _Change) -> None:
    old = _beside(change.target, _OLD)
    old.unlink(missing_ok=True)
    change.old = old
    try:
        os.link(change.target, old, follow_symlinks=False)
    except OSError:
        shutil.copy2(change.target, old, follow_symlinks=False)  # a filesystem without hard links


def _removal(target: Path) -> _Change:
    old = _beside(target, _OLD)
    old.unlink(missing_ok=True)
    return _Change(target, None, old)


def _commit(change: _Change) -> None:
    if change.new is not None:
        os.replace(change.new, change.target)
    else:
        assert change.old is not None
        os.replace(change.target, change.old)
    change.done = True


def _undo(changes: list[_Change], created: list[Path]) -> list[Path]:
    """Put the previous tree back; return the targets that could not be."""
    failed: list[Path] = []
    for change in reversed(changes):
        try:
            if change.done and change.old is not None:
                os.replace(change.old, change.target)
            elif change.done:
                change.target.unlink()  # a file this build added
            elif change.new is not None:  # staged, perhaps in part; the target is untouched
                change.new.unlink(missing_ok=True)
                if change.old is not None:
                    change.old.unlink(missing_ok=True)
        except OSError:
            failed.append(change.target)
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            pass
    return failed


def _makedirs(folder: Path, created: list[Path]) -> None:
    """mkdir -p that notes each folder it made, so a failed build can remove them."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        os.mkdir(path)
        created.append(path)


def _prune(folder: Path, top: Path) -> None:
    """Remove folder and its parents up to (not including) top while they are empty."""
    while folder != top and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


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


class _Build:
    """One build's changes to the tree, so that a failure can undo them."""

    def __init__(self, out: Path):
        self.out = out
        self.changes: list[_Change] = []
        self.created: list[Path] = []  # folders this build made
        self.emptied: list[Path] = []  # folders it removed files from: pruned once empty
        self.hosts: list[Path] = []  # the host folders it writes or removes files in
        self.at = out  # what the build is working on: named when it fails

    def stage(self, plan: dict[str, list[File]]) -> None:
        out = self.out
        _makedirs(out, self.created)
        for host in sorted(plan):
            folder = out / host
            self.hosts.append(folder)
            files = plan[host]
            old = read_manifest(folder) or []
            for f in files:
                self._write(folder, f)
            self._remove(folder, sorted(set(old) - {f.path for f in files}))
            # The manifest last: a build that dies halfway leaves the old one, which still
            # names every file the previous build wrote.
            self._write(folder, File(MANIFEST, manifest_text(files), 0o644))
        # Host folders lvsgen wrote earlier for hosts that are gone: remove what it wrote there.
        for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in plan):
            old = read_manifest(folder)
            if old is not None:
                self.hosts.append(folder)
                self._remove(folder, old + [MANIFEST])

    def _write(self, folder: Path, f: File) -> None:
        self.at = target = folder / f.path
        data = f.text.encode("utf-8")
        if _unchanged(target, data, f.mode):
            return
        _makedirs(target.parent, self.created)
        self.changes.append(_Change(target, _beside(target, _NEW)))
        _stage(self.changes[-1], data, f.mode)

    def _remove(self, folder: Path, names: list[str]) -> None:
        for name in names:
            self.at = target = folder / name
            if target.is_file() or target.is_symlink():
                self.changes.append(_removal(target))
                self.emptied.append(target.parent)

    def commit(self) -> None:
        for change in self.changes:
            self.at = change.target
            _commit(change)

    def undo(self) -> list[Path]:
        return _undo(self.changes, self.created)

    def finish(self, hosts: set[str]) -> None:
        """After the last rename: drop the previous files and the folders left empty."""
        for change in self.changes:
            if change.old is not None:
                change.old.unlink(missing_ok=True)
        # What a killed build, or a failed one that could not undo itself, left behind in
        # lvsgen's folders: only lvsgen makes these names.
        for host in self.hosts:
            for root, _, names in os.walk(host):
                found = [n for n in names if n.startswith(".") and n.endswith((_NEW, _OLD))]
                for name in found:
                    os.unlink(os.path.join(root, name))
                if found:
                    self.emptied.append(Path(root))
        for folder in sorted(set(self.emptied), key=lambda p: len(p.parts), reverse=True):
            top = self.out / folder.relative_to(self.out).parts[0]
            _prune(folder, top)
            if top.name not in hosts:
                _prune(top, self.out)


def write(out: Path, plan: dict[str, list[File]]) -> None:
    check_writable(out, sorted(plan))
    build = _Build(out)
    try:
        build.stage(plan)
        build.commit()
    except OSError as err:
        failed = build.undo()
        what = f"{build.at}: {err.strerror or err}"
        if failed:
            raise OutputError(
                f"{what}; and {len(failed)} file(s) could not be put back (the previous version of "
                f"each is beside it as .NAME{_OLD}): " + ", ".join(map(str, failed))
            ) from err
        raise OutputError(f"{what}; nothing was changed") from err
    except BaseException:
        build.undo()
        raise
    build.finish(set(plan))
