"""Every import in ``realtime/`` is installed by a plain ``pip install .``: the standard library, a run-time
dependency from pyproject.toml, or an optional backend imported lazily (inside a function or a try/except
ImportError) whose absence the code reports itself. A ``[dev]``-only package (pytest, pandas, ...) never counts."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "realtime"

# Import name -> distribution name where they differ.
DISTRIBUTION = {"cv2": "opencv-python", "google": "protobuf", "PIL": "pillow", "yaml": "pyyaml",
                "sklearn": "scikit-learn"}
# GPU/server-side packages that no extra can install on every machine (torch2trt is not on PyPI, Triton's Python
# backend module exists only inside the server): allowed when imported lazily, as the backends do.
OPTIONAL_BACKENDS = {"tensorrt", "torch2trt", "tritonclient", "triton-python-backend-utils", "protobuf"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}


def declared() -> tuple[set[str], set[str]]:
    """(run-time dependencies, dependencies of the non-dev extras) as normalised distribution names."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = _requirement_names(project.get("dependencies", []))
    extras = set()
    for name, reqs in project.get("optional-dependencies", {}).items():
        if name != "dev":
            extras |= _requirement_names(reqs)
    return runtime, extras


def _guards_import_error(node: ast.Try) -> bool:
    names = set()
    for handler in node.handlers:
        if handler.type is None:
            return True
        for t in handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]:
            names.add(getattr(t, "id", getattr(t, "attr", "")))
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception"})


def third_party_imports(source: str) -> list[tuple[str, int, bool]]:
    """(distribution name, line, lazy) for each non-stdlib, non-``realtime`` import of a module's source."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                if isinstance(child, ast.ImportFrom) and (child.level or child.module is None):
                    continue
                modules = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module]
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top == "realtime" or top == "__future__":
                        continue
                    found.append((_norm(DISTRIBUTION.get(top, top)), child.lineno, lazy))
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Try) and _guards_import_error(child):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), True)
                for part in (*child.orelse, *child.finalbody):  # handlers: fallbacks of a failed import, skipped
                    visit(ast.Module(body=[part], type_ignores=[]), inner)
                continue
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def problems(runtime: set[str], extras: set[str]) -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for dist, line, lazy in third_party_imports(path.read_text()):
            if dist in runtime:
                continue
            if lazy and (dist in extras or dist in OPTIONAL_BACKENDS):
                continue
            where = "lazily " if lazy else ""
            out.append(f"{path.relative_to(REPO)}:{line} imports {dist} {where}but it is not a run-time dependency")
    return out


def test_every_run_time_import_is_a_declared_dependency():
    runtime, extras = declared()
    assert not problems(runtime, extras), "\n".join(problems(runtime, extras))


def test_the_check_catches_a_dev_only_import_inside_a_function():
    runtime, extras = declared()
    src = "def read():\n    import pandas as pd\n    import numpy\n"
    assert [d for d, _, lazy in third_party_imports(src) if lazy] == ["pandas", "numpy"]
    assert "pandas" not in runtime | extras | OPTIONAL_BACKENDS  # the old `train --data deadlift=` failure
    assert "numpy" in runtime


def test_the_check_lets_optional_backends_be_imported_lazily_only():
    guarded = "try:\n    import tomli\nexcept ModuleNotFoundError:\n    tomli = None\n"
    assert third_party_imports(guarded) == [("tomli", 2, True)]
    fallback = "try:\n    import tomllib\nexcept ModuleNotFoundError:\n    import tomli as tomllib\n"
    assert third_party_imports(fallback) == []
    assert third_party_imports("import tensorrt\n") == [("tensorrt", 1, False)]
    assert third_party_imports("def f():\n    import tensorrt as trt\n") == [("tensorrt", 2, True)]
    assert third_party_imports("import cv2\nfrom realtime.types import Frame\nimport json\n") == [
        ("opencv-python", 1, False)]
