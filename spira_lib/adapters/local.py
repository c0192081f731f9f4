"""ObjectStore over a local folder.

Keys are checked as text (no ``..`` part), so no key names a file outside the
root; symbolic links *inside* the root are the user's doing and are followed,
to files and to folders (data-versioning tools keep a dataset as links into a
cache). A folder link back to one of its own parents is walked once; one to a
folder that holds the dataset itself (``/``, ``../..``) or to ``/proc``,
``/sys`` or ``/dev`` is not walked.

Nothing a folder may hold breaks a listing or blocks a read: broken or looping
links, named pipes, sockets, devices and names that are not UTF-8 are left out
of listings (with a warning); reading such a key raises
:class:`~spira_lib.reasons.UnusableObject` saying what it is, decided from
``stat`` before the file is opened, and files are opened non-blocking, so a
named pipe never stalls a run.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
import unicodedata
from pathlib import Path
from typing import Iterator

from spira_lib.ports import ObjectExists, ObjectInfo, ObjectNotFound, StoreError, join_key
from spira_lib.reasons import Problem, Reason, UnusableObject

log = logging.getLogger(__name__)

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder",
}  # fmt: skip


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode turned undecodable bytes into lone surrogates
        return False
    return True


class LocalFolderStore:
    """Keys map to files under ``root``. Writes go to a temp file then ``os.replace``,
    so a crash never leaves a half-written object visible. A conditional create
    (``if_absent=True``) hard-links the finished temp file to the key instead:
    ``link`` fails atomically when the name exists, also across processes."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        key = join_key(key)
        if ".." in key.split("/"):
            raise StoreError(f"key {key!r} escapes the store root {self.root}")
        if "\x00" in key:
            raise UnusableObject(Problem(Reason.BAD_PATH, f"{key!r} contains a NUL character"))
        return self.root / key

    def _regular_stat(self, key: str, path: Path) -> os.stat_result:
        """``stat`` of the file ``key`` names (links followed); UnusableObject/ObjectNotFound otherwise."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise self._missing(key, path) from None
        except NotADirectoryError:
            raise ObjectNotFound(str(path)) from None
        except OSError as exc:
            raise self._refusal(key, exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnusableObject(Problem(Reason.NOT_A_FILE, f"{key} is {_kind(st.st_mode)}, not a file"))
        return st

    def get(self, key: str) -> bytes:
        path = self._path(key)
        self._regular_stat(key, path)
        try:
            # Non-blocking: something swapped in for the file after the stat cannot block the read.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise self._refusal(key, exc) from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UnusableObject(Problem(Reason.NOT_A_FILE, f"{key} is {_kind(st.st_mode)}, not a file"))
            try:
                return fh.read()
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc}") from exc

    def _refusal(self, key: str, exc: OSError) -> StoreError:
        if exc.errno == errno.ELOOP:
            return UnusableObject(Problem(Reason.SYMLINK, f"{key} is a symbolic link that loops (it leads back to itself)"))
        if exc.errno in (errno.EACCES, errno.EPERM):
            return UnusableObject(Problem(Reason.UNREADABLE, f"{key} cannot be read: permission denied"))
        if exc.errno == errno.ENAMETOOLONG:
            return UnusableObject(Problem(Reason.BAD_PATH, f"{key[:80]}... is too long a file name for this file system"))
        return StoreError(f"cannot read {self.root / key}: {exc}")

    def _missing(self, key: str, path: Path) -> Exception:
        """Why ``path`` does not exist: a broken link on the way, a name in another encoding, or nothing there."""
        for link in (path, *path.parents):
            if link == self.root or self.root not in link.parents:
                break
            if link.is_symlink() and not link.exists():
                what = "" if link == path else f" (its folder {link.relative_to(self.root).as_posix()})"
                return UnusableObject(Problem(
                    Reason.SYMLINK, f"{key}{what} is a broken symbolic link: its target {os.readlink(link)} does not exist",
                ))  # fmt: skip
        twin = self._non_utf8_twin(path)
        if twin is not None:
            return UnusableObject(Problem(
                Reason.BAD_PATH, f"{key}: a file with this name is there, but its name on disk is not UTF-8 "
                f"({twin!r}); rename it to UTF-8",
            ))  # fmt: skip
        return ObjectNotFound(str(path))

    @staticmethod
    def _non_utf8_twin(path: Path) -> bytes | None:
        """The raw name in ``path``'s folder that reads as ``path.name`` in a legacy encoding, if any."""
        try:
            names = os.listdir(os.fsencode(path.parent))
        except OSError:
            return None
        wanted = unicodedata.normalize("NFC", path.name)
        for raw in names:
            try:
                raw.decode("utf-8")
                continue
            except UnicodeDecodeError:
                pass
            for encoding in ("cp1252", "latin-1"):
                try:
                    if unicodedata.normalize("NFC", raw.decode(encoding)) == wanted:
                        return raw
                except UnicodeDecodeError:
                    continue
        return None

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if if_absent:
                self._link_new(tmp, path)
            else:
                os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    @staticmethod
    def _link_new(tmp: str, path: Path) -> None:
        """Publish the complete ``tmp`` at ``path`` only if nothing is there (atomic, like O_EXCL)."""
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ObjectExists(str(path)) from None
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc}") from exc
        os.unlink(tmp)  # the object now lives under its own name
        try:  # make the new directory entry durable too
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            return False

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        # Walk only the folder the prefix points into, not the whole root.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if head and (".." in head.split("/") or not (self.root / head).is_dir()):
            return
        found = [info for info in self._walk(head) if info.key.startswith(prefix)]
        yield from sorted(found, key=lambda o: o.key)

    def _walk(self, head: str) -> list[ObjectInfo]:
        """Regular files under ``root/head`` (links followed, hidden folders and in-flight writes left out)."""
        found: list[ObjectInfo] = []
        base = self.root / head if head else self.root
        stack: list[tuple[Path, str, frozenset]] = [(base, f"{head}/" if head else "", frozenset())]
        while stack:
            folder, rel, parents = stack.pop()
            try:
                st = os.stat(folder)
                ident = (st.st_dev, st.st_ino)
                if ident in parents:
                    continue  # a link back to a folder above: its files are listed under their own path
                entries = list(os.scandir(folder))
            except OSError as exc:
                log.warning("skipping folder %s: %s", folder, exc.strerror or exc)
                continue
            for entry in entries:
                self._visit(entry, rel, parents | {ident}, stack, found)
        return found

    def _visit(self, entry: os.DirEntry, rel: str, parents: frozenset, stack: list, found: list[ObjectInfo]) -> None:
        name = entry.name
        if not _utf8(name):
            log.warning("skipping %r in %s: its name is not UTF-8", os.fsencode(name), self.root / rel)
            return
        try:
            st = entry.stat()  # follows links
        except OSError as exc:
            why = "a symbolic link that loops" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror or exc})"
            if isinstance(exc, FileNotFoundError):
                why = "a broken symbolic link"
            log.warning("skipping %s%s: %s", rel, name, why)
            return
        if stat.S_ISDIR(st.st_mode):
            if not name.startswith(".") and not self._too_wide(entry, rel):
                stack.append((Path(entry.path), f"{rel}{name}/", parents))
        elif not stat.S_ISREG(st.st_mode):
            log.warning("skipping %s%s: it is %s", rel, name, _kind(st.st_mode))
        elif not (name.startswith(".") and name.endswith(".tmp")):  # an in-flight atomic write
            found.append(ObjectInfo(f"{rel}{name}", st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}"))

    def _too_wide(self, entry: os.DirEntry, rel: str) -> bool:
        """A folder link to a folder holding the whole dataset (``/``, ``../..``) or to a system pseudo-folder:
        walking it would list the machine, not the dataset."""
        if not entry.is_symlink():
            return False
        target = Path(os.path.realpath(entry.path))
        if target == self.root or target in self.root.parents or target.parts[1:2] in (("proc",), ("sys",), ("dev",)):
            log.warning("skipping %s%s: a link to %s, which holds more than a dataset", rel, entry.name, target)
            return True
        return False

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None
