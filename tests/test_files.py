"""Placing files: 0600 from birth, never clobbering, also where hard links do not exist."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from certserver.errors import TargetExists
from certserver.files import StagedFile, create_secret_file


def test_a_secret_file_is_0600_from_creation(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_secret_file(tmp_path / "k", b"secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    with pytest.raises(TargetExists):
        create_secret_file(tmp_path / "k", b"again")
    assert (tmp_path / "k").read_bytes() == b"secret"


@pytest.mark.parametrize("hard_links", [True, False], ids=["links", "no-links"])
def test_placing_never_clobbers_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    if not hard_links:  # as on vfat or some network mounts

        def no_link(*_: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "x_certs.zip"
    first = StagedFile(target, b"first")
    first.place(replace=False)
    first.finish()
    assert target.read_bytes() == b"first"
    second = StagedFile(target, b"second")
    with pytest.raises(TargetExists):
        second.place(replace=False)
    second.undo()
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_certs.zip"]
