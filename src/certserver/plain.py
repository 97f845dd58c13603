"""Domain values as plain JSON-ready data: one form for the CLI's --json and the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from pathlib import Path
from typing import Any

from certserver.clock import iso
from certserver.hosts import Host
from certserver.identity import Ccid, DeploymentName
from certserver.profiles import Organization


def plain(value: Any) -> Any:
    if isinstance(value, Ccid | DeploymentName | Host | Organization):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, enum.Enum):
        folder = getattr(value, "folder", None)
        return folder if isinstance(folder, str) else value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
