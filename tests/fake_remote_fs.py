"""A Beam ``FileSystem`` for the scheme ``revattrtest://``, backed by a local folder
(``REVATTR_TEST_FS_ROOT``): the code paths of ``gs://`` or ``s3://`` (URLs, FileSystems
calls only) without a network. Registered by importing this module (Beam finds
FileSystem subclasses by their scheme)."""

from __future__ import annotations

import os
import posixpath

from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "revattrtest"
ROOT_ENV = "REVATTR_TEST_FS_ROOT"
PREFIX = f"{SCHEME}://"


def _root() -> str:
    return os.environ[ROOT_ENV]


def to_local(url: str) -> str:
    if not url.startswith(PREFIX):
        raise ValueError(f"not a {SCHEME} URL: {url}")
    return os.path.join(_root(), url[len(PREFIX):])


def to_url(local: str) -> str:
    return PREFIX + os.path.relpath(local, _root()).replace(os.sep, "/")


class FakeRemoteFileSystem(LocalFileSystem):
    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        return posixpath.split(path)

    def mkdirs(self, path: str) -> None:
        super().mkdirs(to_local(path))

    def _url_dirname(self, url_or_path: str) -> str:
        return posixpath.dirname(url_or_path)

    def _list(self, dir_or_prefix: str):  # noqa: ANN202
        root = to_local(dir_or_prefix)
        if not os.path.exists(root):
            return
        for folder, _, names in os.walk(root):
            for name in names:
                local = os.path.join(folder, name)
                yield FileMetadata(to_url(local), os.path.getsize(local), os.path.getmtime(local))

    def create(self, path, *args, **kwargs):  # noqa: ANN001, ANN201, ANN002, ANN003
        return super().create(to_local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):  # noqa: ANN001, ANN201, ANN002, ANN003
        return super().open(to_local(path), *args, **kwargs)

    def copy(self, sources, destinations):  # noqa: ANN001, ANN201
        return super().copy([to_local(s) for s in sources], [to_local(d) for d in destinations])

    def rename(self, sources, destinations):  # noqa: ANN001, ANN201
        return super().rename([to_local(s) for s in sources],
                              [to_local(d) for d in destinations])

    def exists(self, path: str) -> bool:
        return super().exists(to_local(path))

    def size(self, path: str) -> int:
        return super().size(to_local(path))

    def last_updated(self, path: str) -> float:
        return super().last_updated(to_local(path))

    def checksum(self, path: str) -> str:
        return super().checksum(to_local(path))

    def metadata(self, path: str) -> FileMetadata:
        meta = super().metadata(to_local(path))
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def delete(self, paths) -> None:  # noqa: ANN001 - files, as an object store deletes
        for path in paths:
            os.remove(to_local(path))
