"""Secret files: private by owner, mode and ACL; systemd credentials accepted as they are."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from async_poller.cli.secretfile import ACL_XATTR, read_secret_file
from async_poller.errors import ConfigError

USER, GROUP_OBJ, MASK, OTHER, USER_OBJ = 0x02, 0x04, 0x10, 0x20, 0x01
NOBODY = 65534


def _set_acl(path: Path, *entries: tuple[int, int, int]) -> None:
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
    try:
        os.setxattr(path, ACL_XATTR, blob)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"no POSIX ACLs here: {error.strerror}")
        raise


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "refresh-token"
    path.write_text("a-refresh-token\n")
    return path


def test_a_private_file_is_read(token_file: Path) -> None:
    """Mode 0600, ours: the token is read."""
    token_file.chmod(0o600)
    assert "a-refresh-token" == read_secret_file(token_file, "--refresh-token-file")


def test_a_group_readable_file_without_acl_is_refused(token_file: Path) -> None:
    """Mode 0640 with no ACL: the group can read it, so it is refused."""
    token_file.chmod(0o640)
    with pytest.raises(ConfigError, match="permissions 0640"):
        read_secret_file(token_file, "--refresh-token-file")


def test_an_acl_granting_only_us_makes_0440_private(token_file: Path) -> None:
    """systemd's tmpfs credentials: mode shows 0440 (the ACL mask), but the ACL grants read to
    our user alone, so the file is accepted (it was refused on the mode bits)."""
    _set_acl(
        token_file,
        (USER_OBJ, 4, 0xFFFFFFFF),
        (USER, 4, os.geteuid()),
        (GROUP_OBJ, 0, 0xFFFFFFFF),
        (MASK, 4, 0xFFFFFFFF),
        (OTHER, 0, 0xFFFFFFFF),
    )
    assert 0o440 == token_file.stat().st_mode & 0o777
    assert "a-refresh-token" == read_secret_file(token_file, "--refresh-token-file")


def test_an_acl_granting_another_user_is_refused(token_file: Path) -> None:
    """An ACL entry that lets another user read the file: refused, whatever the mode says."""
    _set_acl(
        token_file,
        (USER_OBJ, 6, 0xFFFFFFFF),
        (USER, 4, NOBODY),
        (GROUP_OBJ, 0, 0xFFFFFFFF),
        (MASK, 4, 0xFFFFFFFF),
        (OTHER, 0, 0xFFFFFFFF),
    )
    with pytest.raises(ConfigError, match=f"another user \\(uid {NOBODY}"):
        read_secret_file(token_file, "--refresh-token-file")


def test_files_under_credentials_directory_are_accepted(
    token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LoadCredential=` hands the file over in $CREDENTIALS_DIRECTORY: accepted as it is."""
    token_file.chmod(0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(token_file.parent))
    assert "a-refresh-token" == read_secret_file(token_file, "--refresh-token-file")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(token_file.parent / "elsewhere"))
    with pytest.raises(ConfigError, match="LoadCredential"):
        read_secret_file(token_file, "--refresh-token-file")
