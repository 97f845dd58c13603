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


def test_every_source_folder_is_a_package() -> None:
    """setuptools ships only folders with an __init__.py: a missing one drops the module."""
    from pathlib import Path

    root = Path(certserver.__file__).parent
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__" or not any(folder.glob("*.py")):
            continue
        assert (folder / "__init__.py").exists(), f"{folder} has no __init__.py"
