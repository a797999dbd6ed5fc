"""Every ``__all__`` in ``stepguard.core`` is sorted (isort style, as ruff's RUF022: CONSTANTS,
then Classes, then functions) and names only things the module defines."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import stepguard.core


def _core_modules() -> list[ModuleType]:
    names = ["stepguard.core"] + [
        m.name for m in pkgutil.walk_packages(stepguard.core.__path__, prefix="stepguard.core.")
    ]
    return [importlib.import_module(n) for n in sorted(names)]


def _isort_key(name: str) -> tuple[int, str]:
    if name.upper() == name and any(c.isalpha() for c in name):
        return (0, name)  # CONSTANT
    if name[:1].isupper():
        return (1, name)  # Class
    return (2, name)  # function or module


MODULES = _core_modules()


def test_core_modules_are_found() -> None:
    names = {m.__name__ for m in MODULES}
    for expected in ("errors", "policy", "scopes", "tokens", "keys", "elevation", "clock"):
        assert f"stepguard.core.{expected}" in names


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_unique_and_honest(module: ModuleType) -> None:
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert module.__name__.rsplit(".", 1)[-1].startswith("_") or module.__name__ in (
            "stepguard.core",
            "stepguard.core.methods",
        ), f"{module.__name__} has no __all__"
        return
    assert isinstance(exported, list | tuple)
    assert len(set(exported)) == len(exported), "duplicates"
    assert list(exported) == sorted(exported, key=_isort_key), "not sorted"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"__all__ names what the module lacks: {missing}"
