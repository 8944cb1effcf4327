"""Reading a secret from a file only when nobody else can read it (like ssh with its keys).

Who can read a file is decided by its owner, its mode bits and, where it has one, its POSIX
ACL: with an ACL the group bits show the ACL's mask, not who the group is. So a systemd
`LoadCredential=` file (root's, readable by the service's user through an ACL) shows mode
0440 yet is private. Files under `$CREDENTIALS_DIRECTORY` are private by systemd's design
and accepted as they are.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path
from typing import Final

from ..errors import ConfigError

__all__ = ["exposure", "read_secret_file"]

SECRET_FILE_LIMIT: Final = 64 * 1024
ACL_XATTR: Final = "system.posix_acl_access"
_ACL_VERSION: Final = 2
_USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x02, 0x04, 0x08, 0x10, 0x20
_READ_WRITE: Final = 0o6


def read_secret_file(path: Path, what: str) -> str:
    """The one token in the file at `path`; `ConfigError` if others may read or change it,
    or if it holds anything but one token. `what` names the flag in messages."""
    try:
        with path.open("rb") as handle:
            problem = None if _in_credentials_directory(path) else exposure(handle.fileno())
            if problem is not None:
                raise ConfigError(
                    f"{what} {path} {problem}: the token must be readable by you alone\n"
                    f"HINT: chown to yourself and chmod 600 {path}; under systemd, use "
                    "LoadCredential= (files in $CREDENTIALS_DIRECTORY are accepted)"
                )
            text = handle.read(SECRET_FILE_LIMIT).decode("utf-8", "replace").strip()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"{what} {path} must hold exactly one token")
    return text


def exposure(fd: int) -> str | None:
    """Why someone besides us (and root) may read or write the open file `fd`, or None."""
    info = os.fstat(fd)
    if info.st_uid not in (os.geteuid(), 0):
        return f"belongs to another user (uid {info.st_uid})"
    acl = _acl(fd)
    if acl is None:
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return f"has permissions {stat.S_IMODE(info.st_mode):04o}, which are too open"
        return None
    mask = next((perm for tag, perm, _ in acl if tag == _MASK), 0o7)
    for tag, perm, uid in acl:
        if tag == _OTHER and perm & _READ_WRITE:
            return "is open to everyone (its ACL)"
        if tag in (_GROUP_OBJ, _GROUP) and perm & mask & _READ_WRITE:
            return "is open to a group (its ACL)"
        if tag == _USER and uid != os.geteuid() and perm & mask & _READ_WRITE:
            return f"is open to another user (uid {uid}, its ACL)"
    return None


def _acl(fd: int) -> list[tuple[int, int, int]] | None:
    """The entries (tag, permissions, id) of the file's access ACL; None without one."""
    try:
        blob = os.getxattr(fd, ACL_XATTR)
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise
    if len(blob) < 4 or (len(blob) - 4) % 8 or struct.unpack_from("<I", blob)[0] != _ACL_VERSION:
        raise OSError(errno.EINVAL, "unreadable access control list")
    return [struct.unpack_from("<HHI", blob, offset) for offset in range(4, len(blob), 8)]


def _in_credentials_directory(path: Path) -> bool:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return False
    return path.resolve().parent == Path(directory).resolve()
