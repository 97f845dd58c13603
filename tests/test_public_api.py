"""The curated public surface: every name in ``__all__`` exists, and nothing private leaks."""

from __future__ import annotations

import certserver
import certserver.store


def test_all_names_exist_and_are_public() -> None:
    for module in (certserver, certserver.store):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert not name.startswith("_")
            assert hasattr(module, name), f"{module.__name__}.{name} is missing"


def test_all_lists_every_public_reexport() -> None:
    exported = {
        name
        for name, value in vars(certserver).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("certserver.")
    }
    assert exported == set(certserver.__all__)
