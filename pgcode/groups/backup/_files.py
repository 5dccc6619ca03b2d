"""Files under PGCODE_BACKUP_DIR, and never outside it: relative paths only, no `..`, no symlinks on the way."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pgcode.errors import ErrorCode, ToolError
from pgcode.settings import Settings

PATH_MAX = 1024


def _refuse(message: str) -> ToolError:
    return ToolError(ErrorCode.INVALID_INPUT, message,
                     hint="give a relative path inside PGCODE_BACKUP_DIR, e.g. exports/orders.csv")


def backup_dir(settings: Settings) -> Path:
    if settings.backup_dir is None:
        raise ToolError(ErrorCode.INVALID_INPUT, "file mode is off: PGCODE_BACKUP_DIR is not set",
                        hint="set PGCODE_BACKUP_DIR to a directory pgcode may use for backup files, "
                             "or leave out `file` to get the data in the result")
    base = settings.backup_dir.resolve()
    if not base.is_dir():
        raise ToolError(ErrorCode.NOT_FOUND, "PGCODE_BACKUP_DIR is not an existing directory",
                        hint="create the directory or point PGCODE_BACKUP_DIR at one")
    return base


def parts(relative: str) -> list[str]:
    """The components of a caller's relative path; refuses absolute paths, `..`, and odd characters."""
    if not relative or len(relative) > PATH_MAX or "\x00" in relative or "\\" in relative:
        raise _refuse("the file path is empty, too long, or contains a NUL or backslash")
    if relative.startswith("/"):
        raise _refuse(f"{relative!r} is an absolute path; file paths are relative to PGCODE_BACKUP_DIR")
    items = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in items:
        raise _refuse(f"{relative!r} leads out of PGCODE_BACKUP_DIR ('..' is not allowed)")
    if not items:
        raise _refuse(f"{relative!r} names no file")
    return items


def _open_dirs(base: Path, dirs: list[str], *, create: bool) -> int:
    """A descriptor of base/dirs..., opened one component at a time without following a symlink."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in dirs:
            try:
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise ToolError(ErrorCode.NOT_FOUND, f"there is no directory {name!r} in the backup directory"
                                    ) from None
                os.mkdir(name, 0o750, dir_fd=fd)
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(f"{name!r} is a symbolic link or not a directory; links are not followed"
                                  ) from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_inside(base: Path, items: list[str]) -> None:
    resolved = base.joinpath(*items).resolve()
    if resolved != base and base not in resolved.parents:
        raise _refuse("the path resolves outside PGCODE_BACKUP_DIR")


@contextlib.contextmanager
def open_for_write(settings: Settings, relative: str, *, overwrite: bool) -> Iterator[BinaryIO]:
    """A new (or, with overwrite, truncated) regular file; removed again when the block fails."""
    base = backup_dir(settings)
    items = parts(relative)
    _check_inside(base, items)
    dir_fd = _open_dirs(base, items[:-1], create=True)
    name = items[-1]
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if overwrite else os.O_EXCL)
        try:
            fd = os.open(name, flags, 0o640, dir_fd=dir_fd)
        except FileExistsError:
            raise ToolError(ErrorCode.ALREADY_EXISTS, f"{relative!r} exists in the backup directory",
                            hint="pass overwrite: true to replace it, or choose another name") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(f"{relative!r} is a symbolic link; links are not followed") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)
            raise _refuse(f"{relative!r} is not a plain file (or has other hard links)")
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)
                raise
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def open_for_read(settings: Settings, relative: str) -> Iterator[BinaryIO]:
    """An existing regular file under the backup directory."""
    base = backup_dir(settings)
    items = parts(relative)
    _check_inside(base, items)
    dir_fd = _open_dirs(base, items[:-1], create=False)
    try:
        try:
            fd = os.open(items[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ToolError(ErrorCode.NOT_FOUND, f"{relative!r} does not exist in the backup directory") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(f"{relative!r} is a symbolic link; links are not followed") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _refuse(f"{relative!r} is not a plain file")
        with os.fdopen(fd, "rb") as f:
            yield f
    finally:
        os.close(dir_fd)
