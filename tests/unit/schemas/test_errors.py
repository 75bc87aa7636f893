"""Every exception class Herald defines is under the one root, and each name is defined once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

from schemas.errors import HeraldError

PACKAGES = ("schemas", "channels", "consumers")


def _defined_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            module = importlib.import_module(info.name)
            found += [
                obj
                for obj in vars(module).values()
                if inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ]
    return found


def test_the_scan_finds_the_tree() -> None:
    # Guards the test itself: an empty walk would pass everything below.
    names = {cls.__name__ for cls in _defined_exceptions()}
    assert {"HeraldError", "RecordError", "DatabaseUnavailable", "AuthError", "RetryableDelivery"} <= names


def test_every_exception_is_a_herald_error() -> None:
    outside = [
        f"{cls.__module__}.{cls.__name__}"
        for cls in _defined_exceptions()
        if not issubclass(cls, HeraldError)
    ]
    assert outside == []


def test_each_exception_name_is_defined_once() -> None:
    where: defaultdict[str, list[str]] = defaultdict(list)
    for cls in _defined_exceptions():
        where[cls.__name__].append(cls.__module__)
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}


def test_the_docstring_tree_names_every_exception() -> None:
    doc = importlib.import_module("schemas.errors").__doc__ or ""
    missing = sorted(
        {cls.__name__ for cls in _defined_exceptions()} - set(doc.replace("(", " ").replace(",", " ").split())
    )
    assert missing == []
