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

What a build will change is decided by one comparison, which only reads: `write` applies
it one host folder at a time (a host's files are rendered, compared and staged, then
dropped, so a build holds one host's files in memory, not every host's), and `changes`,
which `lvsgen build --check` prints, collects it for every host without the bytes.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator, Mapping

from lvsgen.errors import OutputError
from lvsgen.files import MANIFEST, File

_MANIFEST_HEAD = "# files lvsgen wrote in this folder; on rebuild it removes only these\n"
# Beside each target: .NAME.lvsgen-tmp holds its new bytes, .NAME.lvsgen-old its previous
# file until the build is complete. The folder is lvsgen's own, so a fixed name (left over
# only by a crash) is safe to replace.
_NEW = ".lvsgen-tmp"
_OLD = ".lvsgen-old"
# How many hard-linked files' bytes the comparison keeps (the newest): the engine's is the
# one that matters, and the bound keeps a tree of linked files from filling memory.
_VERIFIED = 8
# Identical files a build stages (the engine, the same on every host) share one inode: the
# first is written, the others are hard links to it. Only files of at least _LINK_MIN bytes,
# and only the _LINKABLE distinct ones most recently used are remembered, so memory stays bounded.
_LINK_MIN = 4096
_LINKABLE = 8


def read_manifest(folder: Path) -> list[str] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    names = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    # Only relative paths inside the folder: a tampered manifest must not reach outside it.
    return [n for n in names if not n.startswith("/") and ".." not in Path(n).parts]


def manifest_text(files: list[File]) -> str:
    return _MANIFEST_HEAD + "".join(f"{f.path}\n" for f in sorted(files, key=lambda f: f.path))


class Kind(Enum):
    """How a build changes one file (the word `lvsgen build --check` prints before it)."""

    ADDED = "added"  # not there yet
    CHANGED = "changed"  # other bytes (the mode may differ too), or not a regular file
    MODE = "mode"  # the same bytes, another mode
    REMOVED = "removed"  # lvsgen wrote it earlier, and the build no longer generates it


@dataclass(frozen=True)
class Change:
    """One file a build changes: written with data and mode, or (REMOVED) taken away."""

    kind: Kind
    target: Path
    data: bytes = b""
    mode: int = 0


@dataclass(frozen=True)
class Changes:
    """Everything a build changes under the output folder, and nothing else."""

    # In the order the build applies them: per host folder, its new and changed files, the
    # files it no longer generates, and its manifest last.
    files: tuple[Change, ...]
    # Temporary names a killed build left in lvsgen's host folders: deleted once the build
    # is complete.
    leftovers: tuple[Path, ...]


def _difference(path: Path, data: bytes, mode: int, verified: dict[tuple[int, int], bytes] | None = None) -> Kind | None:
    """How the file at path differs from data with mode; None if it has both already.
    verified: the bytes of hard-linked files already read, by (device, inode), so that
    another name of one is compared without reading it again."""
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return Kind.ADDED
    except OSError:
        return Kind.CHANGED
    if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
        return Kind.CHANGED
    inode = (st.st_dev, st.st_ino)
    if verified is not None and verified.get(inode) == data:
        return Kind.MODE if stat.S_IMODE(st.st_mode) != mode else None
    try:
        if path.read_bytes() != data:
            return Kind.CHANGED
    except OSError:
        return Kind.CHANGED
    if verified is not None and st.st_nlink > 1:
        verified[inode] = data
        while len(verified) > _VERIFIED:
            del verified[next(iter(verified))]
    return Kind.MODE if stat.S_IMODE(st.st_mode) != mode else None


def _is_leftover(name: str) -> bool:
    return name.startswith(".") and name.endswith((_NEW, _OLD))


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{suffix}")


@dataclass
class _Step:
    """One target of a build: replaced by `new`, or (new is None) removed."""

    target: Path
    new: Path | None  # the staged file that takes the target's place
    old: Path | None = None  # the target's previous file under its second name, if it had one
    done: bool = False  # renamed: the target now shows the build's result


def _stage(change: _Step, data: bytes, mode: int) -> None:
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


def _keep(change: _Step) -> None:
    old = _beside(change.target, _OLD)
    old.unlink(missing_ok=True)
    change.old = old
    try:
        os.link(change.target, old, follow_symlinks=False)
    except OSError:
        shutil.copy2(change.target, old, follow_symlinks=False)  # a filesystem without hard links


def _removal(target: Path) -> _Step:
    old = _beside(target, _OLD)
    old.unlink(missing_ok=True)
    return _Step(target, None, old)


def _commit(change: _Step) -> None:
    if change.new is not None:
        os.replace(change.new, change.target)
    else:
        assert change.old is not None
        os.replace(change.target, change.old)
    change.done = True


def _undo(steps: list[_Step], created: list[Path]) -> list[Path]:
    """Put the previous tree back; return the targets that could not be."""
    failed: list[Path] = []
    for change in reversed(steps):
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


def _host_changes(out: Path, plan: Mapping[str, list[File]]) -> Iterator[tuple[list[Change], list[Path]]]:
    """For each host folder the build writes or removes files in, one at a time: its changes
    (in the order the build applies them) and the temporary names a killed build left there.
    Reads only. A host's files are rendered when its turn comes, and its leftovers are listed
    before the caller stages anything in it."""
    verified: dict[tuple[int, int], bytes] = {}  # hard-linked files already compared

    def compare(folder: Path, f: File, found: list[Change]) -> None:
        data = f.data()
        kind = _difference(folder / f.path, data, f.mode, verified)
        if kind is not None:
            found.append(Change(kind, folder / f.path, data, f.mode))

    def remove(folder: Path, names: list[str], found: list[Change]) -> None:
        for name in names:
            target = folder / name
            if target.is_file() or target.is_symlink():
                found.append(Change(Kind.REMOVED, target))

    for host in sorted(plan):
        folder = out / host
        new = plan[host]
        old = read_manifest(folder) or []
        found: list[Change] = []
        for f in new:
            compare(folder, f, found)
        remove(folder, sorted(set(old) - {f.path for f in new}), found)
        # The manifest last: a build that dies halfway leaves the old one, which still
        # names every file the previous build wrote.
        compare(folder, File(MANIFEST, manifest_text(new), 0o644), found)
        yield found, _leftovers(folder)
    # Host folders lvsgen wrote earlier for hosts that are gone: remove what it wrote there.
    if out.is_dir():
        for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in plan):
            gone = read_manifest(folder)
            if gone is not None:
                found = []
                remove(folder, gone + [MANIFEST], found)
                yield found, _leftovers(folder)


def _leftovers(folder: Path) -> list[Path]:
    return sorted(Path(root, name) for root, _, names in os.walk(folder) for name in names if _is_leftover(name))


def changes(out: Path, plan: Mapping[str, list[File]]) -> Changes:
    """What a build of plan into out would change; reads only, and refuses (OutputError)
    what the build refuses. This is the one comparison: `write` applies the same changes,
    one host folder at a time. The result holds no file's bytes (data is b"")."""
    check_writable(out, sorted(plan))
    files: list[Change] = []
    leftovers: list[Path] = []
    for found, left in _host_changes(out, plan):
        files += (Change(c.kind, c.target, b"", c.mode) for c in found)
        leftovers += left
    return Changes(tuple(files), tuple(sorted(leftovers)))


class _Build:
    """One build's changes to the tree, so that a failure can undo them."""

    def __init__(self, out: Path):
        self.out = out
        self.steps: list[_Step] = []
        self.created: list[Path] = []  # folders this build made
        self.emptied: list[Path] = []  # folders it removed files from: pruned once empty
        self.at = out  # what the build is working on: named when it fails
        # Files staged so far that a later identical one is linked to, as (mode, bytes,
        # staged name): the _LINKABLE most recently used.
        self.staged: list[tuple[int, bytes, Path]] = []

    def stage(self, found: list[Change]) -> None:
        for change in found:
            self.at = target = change.target
            if change.kind is Kind.REMOVED:
                self.steps.append(_removal(target))
                self.emptied.append(target.parent)
            else:
                _makedirs(target.parent, self.created)
                step = _Step(target, _beside(target, _NEW))
                self.steps.append(step)
                self._stage(step, change.data, change.mode)

    def _stage(self, step: _Step, data: bytes, mode: int) -> None:
        """Stage data, as a hard link to a file this build staged with the same bytes and
        mode (every host's engine), or where there is none or no hard links, written out."""
        if len(data) < _LINK_MIN:
            _stage(step, data, mode)
            return
        at = next((i for i, (m, other, _) in enumerate(self.staged) if m == mode and other == data), None)
        if at is not None:
            self.staged.append(self.staged.pop(at))  # the newest used: kept the longest
            assert step.new is not None
            step.new.unlink(missing_ok=True)
            try:
                os.link(self.staged[-1][2], step.new)
            except OSError:
                pass  # a filesystem without hard links: write it out
            else:
                if step.target.is_file() or step.target.is_symlink():
                    _keep(step)
                return
        _stage(step, data, mode)
        if at is None:
            assert step.new is not None
            self.staged = [*self.staged[-(_LINKABLE - 1):], (mode, data, step.new)]

    def commit(self) -> None:
        for step in self.steps:
            self.at = step.target
            _commit(step)

    def undo(self) -> list[Path]:
        return _undo(self.steps, self.created)

    def finish(self, leftovers: list[Path], hosts: set[str]) -> None:
        """After the last rename: drop the previous files and the folders left empty."""
        for step in self.steps:
            if step.old is not None:
                step.old.unlink(missing_ok=True)
        # What a killed build, or a failed one that could not undo itself, left behind in
        # lvsgen's folders: only lvsgen makes these names. This build may have reused some.
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
            self.emptied.append(leftover.parent)
        for folder in sorted(set(self.emptied), key=lambda p: len(p.parts), reverse=True):
            top = self.out / folder.relative_to(self.out).parts[0]
            _prune(folder, top)
            if top.name not in hosts:
                _prune(top, self.out)


def write(out: Path, plan: Mapping[str, list[File]]) -> None:
    """Apply `changes`: compare and stage one host folder at a time (so that only one host's
    files are in memory), then commit every staged file, or undo it all."""
    build = _Build(out)
    leftovers: list[Path] = []
    try:
        check_writable(out, sorted(plan))
        _makedirs(out, build.created)
        for found, left in _host_changes(out, plan):
            build.stage(found)
            leftovers += left
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
    build.finish(leftovers, set(plan))
