"""The export's container: a plain (ustar) tar stream of the layout's files under one
folder, written as the files come (never the whole export in memory), and read back from a
tar file or from the folder it was extracted to (decision 0034)."""
from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path

FOLDER = "punte-audit"


class _Sink:
    """What tarfile writes, handed on chunk by chunk."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


async def tar_stream(files: AsyncIterable[tuple[str, bytes]], mtime: int) -> AsyncIterator[bytes]:
    """The tar bytes of ``files`` ((path in the layout, bytes), in order) under FOLDER/."""
    sink = _Sink()
    # "w|": a stream; ustar: the plainest tar every tool reads (paths here stay under 100 bytes).
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT) as archive:  # type: ignore[call-overload]
        async for path, data in files:
            info = tarfile.TarInfo(f"{FOLDER}/{path}")
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            archive.addfile(info, io.BytesIO(data))
            chunk = sink.take()
            if chunk:
                yield chunk
    yield sink.take()


class TarSource:
    """An export as the tar file the service streamed (domain.offline.Source)."""

    def __init__(self, path: Path) -> None:
        self._archive = tarfile.open(path, mode="r:*")
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in self._archive.getmembers():
            if member.isfile():
                self._members[_in_layout(member.name)] = member

    def read(self, path: str) -> bytes | None:
        member = self._members.get(path)
        if member is None:
            return None
        handle = self._archive.extractfile(member)
        return handle.read() if handle is not None else None

    def paths(self) -> Iterable[str]:
        return self._members.keys()

    def close(self) -> None:
        self._archive.close()


def _in_layout(name: str) -> str:
    first, sep, rest = name.lstrip("./").partition("/")
    return rest if sep and first == FOLDER else name


class DirectorySource:
    """An export extracted to a folder (the folder itself, or the one holding FOLDER/)."""

    def __init__(self, path: Path) -> None:
        self.root = path / FOLDER if (path / FOLDER).is_dir() else path

    def read(self, path: str) -> bytes | None:
        file = self.root / path
        return file.read_bytes() if file.is_file() else None

    def paths(self) -> Iterable[str]:
        return (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())


def open_export(path: Path) -> TarSource | DirectorySource:
    return DirectorySource(path) if path.is_dir() else TarSource(path)
