"""The shape of the tree (docs/architecture.md, "Folder layout"), checked on the parsed imports.

Dependencies point one way, schemas ← channels ← consumers; the CLI is a leaf that nothing else
imports; production modules stay small enough to read in one sitting.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("schemas", "channels", "consumers")
MAX_LINES = 400


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, relative ones resolved.

    ``from a import b`` yields both ``a`` and ``a.b``: ``b`` may be a submodule.
    """
    module = _name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _violations(sources: list[Path], forbidden: str) -> list[str]:
    return [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in sources
        for line, name in imported(p)
        if _within(name, forbidden)
    ]


def test_imports_are_resolved_from_the_syntax_tree(tmp_path: Path) -> None:
    # The checks below are only as good as this: plain, from-, relative and package imports.
    pkg = tmp_path / "consumers" / "api"
    pkg.mkdir(parents=True)
    mod = pkg / "x.py"
    mod.write_text(
        "import consumers.cli.main\nfrom consumers import cli\nfrom ..cli import run\nfrom . import deps\n"
        "def f() -> None:\n    from consumers.cli.doctor import evaluate\n"
        "s = 'from consumers.cli import nothing'  # a string is not an import\n"
    )
    assert [name for _, name in imported(mod, tmp_path)] == [
        "consumers.cli.main",
        "consumers",
        "consumers.cli",
        "consumers.cli",
        "consumers.cli.run",
        "consumers.api",
        "consumers.api.deps",
        "consumers.cli.doctor",
        "consumers.cli.doctor.evaluate",
    ]


def test_nothing_outside_the_cli_imports_it() -> None:
    sources = [p for p in _modules(*PRODUCTION, "bench") if not _within(_name(p), "consumers.cli")]
    assert len(sources) > 100
    assert _violations(sources, "consumers.cli") == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("schemas", "channels"), ("schemas", "consumers"), ("channels", "consumers")],
)
def test_dependencies_point_one_way(package: str, forbidden: str) -> None:
    assert _violations(_modules(package), forbidden) == []


def test_no_production_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _modules(*PRODUCTION)}
    assert len(sizes) > 100
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def _tested_module(test_file: Path) -> Path | None:
    """The module a unit test file is named after: tests/unit/<dir>/test_<module>[_<aspect>].py."""
    folder = ROOT / test_file.parent.relative_to(ROOT / "tests" / "unit")
    words = test_file.stem.removeprefix("test_").split("_")
    for n in range(len(words), 0, -1):
        candidate = folder / ("_".join(words[:n]) + ".py")
        if candidate.is_file():
            return candidate
    return None


# Top-level unit test files test the repository itself, not one module.
REPOSITORY_TESTS = {"test_docs.py", "test_docs_workflows.py", "test_layout.py", "test_web_logic.py"}


def test_unit_test_files_mirror_the_module_they_test() -> None:
    # Every other file sits where its module does.
    top = {p.name for p in (ROOT / "tests" / "unit").glob("test_*.py")}
    assert top - REPOSITORY_TESTS == set(), "a unit test of a module belongs in its module's folder"
    files = [p for p in (ROOT / "tests" / "unit").rglob("test_*.py") if p.parent != ROOT / "tests" / "unit"]
    assert len(files) > 20
    assert [str(p.relative_to(ROOT)) for p in files if _tested_module(p) is None] == []


def test_the_architecture_document_names_every_package() -> None:
    # docs/architecture.md's folder layout is how a newcomer finds their way: no package is missing.
    doc = (ROOT / "docs" / "architecture.md").read_text()
    layout = doc.split("## Folder layout", 1)[1]
    named = {
        line.split()[0].rstrip("/")
        for line in layout.splitlines()
        if line and not line.startswith((" ", "`"))
    }
    packages = {
        str(p.parent.relative_to(ROOT))
        for top in ("channels", "consumers")
        for p in (ROOT / top).rglob("__init__.py")
        if p.parent != ROOT / top and "node_modules" not in p.parts
    }
    assert len(packages) > 15
    assert sorted(packages - named) == []
