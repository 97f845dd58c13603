"""Owners of installed files: names resolved to ids once, and whether we may change them."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from certserver.errors import InvalidInput

BROKER_USER = "rabbitmq"


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int
    label: str

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, spec: str) -> Owner:
        """``USER`` or ``USER:GROUP`` (names or numbers); refuses unknown ones."""
        user, _, group = spec.partition(":")
        try:
            entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise InvalidInput(f"user {user!r} does not exist on this host") from None
        gid = entry.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
            except KeyError:
                raise InvalidInput(f"group {group!r} does not exist on this host") from None
        label = f"{entry.pw_name}:{grp.getgrgid(gid).gr_name if _has_group(gid) else gid}"
        return cls(entry.pw_uid, gid, label)

    @classmethod
    def root(cls) -> Owner:
        return cls(0, 0, "root:root")

    @classmethod
    def current(cls) -> Owner:
        return cls.parse(str(os.geteuid()))


def broker_owner(spec: str | None) -> Owner:
    """The RabbitMQ files' owner: ``--owner`` if given, else user rabbitmq (which must exist)."""
    if spec:
        return Owner.parse(spec)
    try:
        return Owner.parse(BROKER_USER)
    except InvalidInput:
        raise InvalidInput(
            f"user {BROKER_USER} does not exist on this host; give the broker files' owner "
            "with --owner USER[:GROUP]"
        ) from None


def can_chown() -> bool:
    return os.geteuid() == 0


def _has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True
