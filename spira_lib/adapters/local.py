"""ObjectStore over a local folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

from spira_lib.ports import ObjectExists, ObjectInfo, ObjectNotFound, StoreError, join_key


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
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"key {key!r} escapes the store root {self.root}")
        return path

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(str(path)) from None
        except IsADirectoryError:
            raise ObjectNotFound(f"{path} is a folder, not an object") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc

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
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        # Walk only the folder the prefix points into, not the whole root.
        base = self.root
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if head:
            base = self.root / head
            if not base.is_dir():
                return
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an in-flight atomic write
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    found.append(ObjectInfo(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}"))
        yield from sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None
