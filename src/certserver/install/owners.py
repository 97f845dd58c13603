"""Owners of installed files: names resolved to ids once, and whether we may change them."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from certserver.errors import InvalidInput
from certserver.identity import Component

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
            entry = pwd.getpwuid(int(user)) if _number(user) else pwd.getpwnam(user)
        except (KeyError, OverflowError, ValueError):
            raise InvalidInput(f"user {user!r} does not exist on this host") from None
        gid = entry.pw_gid
        if group:
            try:
                gid = (
                    grp.getgrgid(int(group)).gr_gid
                    if _number(group)
                    else grp.getgrnam(group).gr_gid
                )
            except (KeyError, OverflowError, ValueError):
                raise InvalidInput(f"group {group!r} does not exist on this host") from None
        label = f"{entry.pw_name}:{grp.getgrgid(gid).gr_name if _has_group(gid) else gid}"
        return cls(entry.pw_uid, gid, label)

    @classmethod
    def root(cls) -> Owner:
        return cls(0, 0, "root:root")

    @classmethod
    def current(cls) -> Owner:
        """Whoever runs this (also a uid without a passwd entry, as in containers)."""
        uid, gid = os.geteuid(), os.getegid()
        try:
            return cls.parse(f"{uid}:{gid}")
        except InvalidInput:
            return cls(uid, gid, f"{uid}:{gid}")


def owner_for(component: Component, broker: Owner | None, *, chown: bool) -> Owner:
    """Who owns a set's files: the broker's user for the broker's set, else root."""
    if not chown:
        return Owner.current()
    return broker if component.is_broker and broker is not None else Owner.root()


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


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True
