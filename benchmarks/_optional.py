"""Optional packages (the ``bench`` extra): imported only if installed.

Modules come back as :class:`types.ModuleType`, so the harness type-checks the
same whether the extra is installed or not.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

__all__ = ["missing_note", "optional_module", "version_of"]


def optional_module(name: str) -> ModuleType | None:
    """``name`` imported, or None if it (or one of its dependencies) is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def version_of(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_note(distribution: str) -> str:
    """Why a variant needing ``distribution`` was skipped."""
    return f"{distribution} not installed (pip install -e '.[bench]')"
