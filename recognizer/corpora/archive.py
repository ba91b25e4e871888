"""Safe extraction of corpus tarballs: every member is checked before any is written."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath

__all__ = ["check_member", "safe_extract"]


def safe_extract(tarball: Path, dest: Path, hint: str = "delete it to download again") -> None:
    """Extract ``tarball`` into ``dest``, refusing the whole archive if any member is unsafe.

    Members that would land outside ``dest`` (absolute paths, ``..``, drive letters, links pointing
    out) or that are not files, folders or links raise ValueError before anything is written.
    ``hint`` ends the message for an unreadable archive.
    """
    unreadable = f"{tarball}: not a readable tar archive (%s); {hint}"
    try:
        archive = tarfile.open(tarball, "r:*")
    except tarfile.TarError as error:
        raise ValueError(unreadable % error) from None
    with archive:
        try:
            members = archive.getmembers()
        except (tarfile.TarError, EOFError, OSError) as error:  # a truncated gzip stream raises EOFError
            raise ValueError(unreadable % error) from None
        for member in members:
            check_member(tarball, member)
        if hasattr(tarfile, "data_filter"):
            # The "data" filter also drops setuid bits and ownership; our own checks cover older Pythons.
            archive.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4 without the extraction-filter backport
            archive.extractall(dest, members=members)


def check_member(tarball: Path, member: tarfile.TarInfo) -> None:
    """Raise ValueError if extracting ``member`` could write outside the destination folder."""

    def unsafe(name: str) -> bool:
        posix = PurePosixPath(name.replace("\\", "/"))
        return posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", name) is not None

    if unsafe(member.name):
        raise ValueError(f"{tarball}: refusing member {member.name!r}: it would be written outside the folder")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ValueError(f"{tarball}: refusing member {member.name!r}: not a regular file or folder")
    if member.issym() or member.islnk():
        # Symlinks resolve from their own folder, hard links from the archive root.
        base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
        target = base / member.linkname
        depth = 0
        for part in target.parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                break
        if PurePosixPath(member.linkname).is_absolute() or depth < 0:
            raise ValueError(
                f"{tarball}: refusing link {member.name!r} -> {member.linkname!r}: it points outside the folder"
            )
