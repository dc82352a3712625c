"""Import rules, checked on the source with `ast` (nothing is imported to check them).

- `assist/core/` imports only the standard library, pydantic and phonenumbers
  (assist/core/README.md).
- The emulator stands in for Genesys Cloud, so it must not share code with the server.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "assist" / "core"
EMULATOR = ROOT / "emulator"

FORBIDDEN_IN_CORE = {
    "flask",
    "rq",
    "redis",
    "httpx",
    "websockets",
    "werkzeug",
    "structlog",
}
# phonenumbers (libphonenumber's metadata, pure Python, no I/O) finds phone numbers for
# redaction: a maintained library rather than a home-made regex, and no framework.
THIRD_PARTY_ALLOWED_IN_CORE = {"pydantic", "pydantic_core", "phonenumbers"}


def _package_of(path: Path) -> str:
    """Dotted package containing `path` (e.g. assist/core/ranking.py -> assist.core)."""
    return ".".join(path.relative_to(ROOT).parent.parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of every module a source imports, relative imports resolved."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            modules.add(name)
            # `from assist import stores` imports the module assist.stores.
            modules.update(f"{name}.{alias.name}" for alias in node.names if alias.name != "*")
    return modules


def _sources(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.py"))


def _core_violations(module: str) -> str | None:
    top = module.split(".")[0]
    if top in FORBIDDEN_IN_CORE:
        return "framework/I-O library"
    if top == "assist":
        return None if module == "assist.core" or module.startswith("assist.core.") else "assist"
    if top == "__future__" or top in sys.stdlib_module_names:
        return None
    if top in THIRD_PARTY_ALLOWED_IN_CORE:
        return None
    return "third-party library other than pydantic and phonenumbers"


def test_the_import_scanner_sees_every_form_of_import() -> None:
    source = "\n".join(
        [
            "import flask",
            "import os.path as p",
            "from redis.client import Pipeline",
            "from . import models",
            "from ..stores import keys",
            "def f():",
            "    import httpx",
        ]
    )
    found = imported_modules(source, "assist.core")
    assert {"flask", "os.path", "redis.client", "httpx"} <= found
    assert "assist.core.models" in found
    assert "assist.stores" in found and "assist.stores.keys" in found


def test_frameworks_stay_refused_in_core() -> None:
    for module in ("flask", "rq.job", "redis", "httpx", "websockets.client"):
        assert _core_violations(module) == "framework/I-O library"
    assert _core_violations("phonenumbers") is None
    assert _core_violations("requests") is not None


def test_core_sources_are_found() -> None:
    names = {path.name for path in _sources(CORE)}
    assert {"models.py", "ranking.py", "redaction.py", "audit.py"} <= names


@pytest.mark.parametrize("path", _sources(CORE), ids=lambda p: p.name)
def test_core_imports_only_stdlib_pydantic_and_core(path: Path) -> None:
    modules = imported_modules(path.read_text(encoding="utf-8"), _package_of(path))
    violations = {
        module: reason for module in modules if (reason := _core_violations(module)) is not None
    }
    assert violations == {}, f"{path.relative_to(ROOT)} breaks the assist.core import rule"


def test_emulator_sources_are_found() -> None:
    names = {path.name for path in _sources(EMULATOR)}
    assert {"app.py", "server.py", "__main__.py"} <= names


@pytest.mark.parametrize("path", _sources(EMULATOR), ids=lambda p: p.name)
def test_emulator_imports_nothing_from_the_server(path: Path) -> None:
    modules = imported_modules(path.read_text(encoding="utf-8"), _package_of(path))
    leaked = sorted(m for m in modules if m.split(".")[0] in {"assist", "webapp", "workers"})
    assert leaked == [], f"{path.relative_to(ROOT)} imports server code"
