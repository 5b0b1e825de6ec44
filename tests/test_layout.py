"""The package's layout keeps data flowing one way: no import circles, the request layer
never imports the delivery engine, destinations import neither, and the old import paths
still work (with a deprecation warning) for one release."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cdptrack"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the cdptrack modules it imports, anywhere in it (lazy imports too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names
                        if f"{target}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package() -> None:
    assert cycles(import_graph()) == []


def test_request_layer_and_destinations_keep_to_their_side() -> None:
    graph = import_graph()
    crossings = sorted(
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if (name.startswith("cdptrack.observe") and target.startswith(
            ("cdptrack.delivery", "cdptrack.tracker", "cdptrack.sink", "cdptrack.commands")))
        or (name.startswith("cdptrack.destinations") and target.startswith(
            ("cdptrack.observe", "cdptrack.delivery", "cdptrack.tracker")))
        or (name.startswith("cdptrack.delivery") and target.startswith("cdptrack.observe"))
    )
    assert crossings == []


def test_core_never_imports_a_framework() -> None:
    frameworks = ("flask", "starlette", "fastapi", "django", "werkzeug")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "sink" in path.parts or "commands" in path.parts:
            continue  # the CLI's demo starts the example shops
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in frameworks]
    assert offenders == []


@pytest.mark.parametrize(("old", "name", "new"), [
    ("cdptrack.client", "Tracker", "cdptrack.tracker"),
    ("cdptrack.observe_options", "ObserveOptions", "cdptrack.observe.options"),
    ("cdptrack.observe_options", "PAGE_KINDS", "cdptrack.observe.options"),
    ("cdptrack.declare", "track", "cdptrack.observe.declare"),
])
def test_old_import_paths_still_work_with_a_warning(old: str, name: str, new: str) -> None:
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message)
               for w in caught)


def test_public_names_import_from_a_fresh_interpreter() -> None:
    code = (
        "from cdptrack import Tracker, track, Config, Event\n"
        "from cdptrack.asgi import CDPTrackMiddleware\n"
        "from cdptrack.wsgi import CDPTrackWSGIMiddleware\n"
        "from cdptrack.observe import ObserveOptions, Observer\n"
        "import sys\n"
        "print(Tracker.__module__, track.__class__.__module__, ObserveOptions.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cdptrack.tracker", "cdptrack.observe.declare", "cdptrack.observe.options"]


def test_rendering_alone_does_not_load_the_delivery_engine() -> None:
    code = (
        "import sys\n"
        "from cdptrack.destinations import render_event\n"
        "import cdptrack.observe\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cdptrack.delivery', 'httpx'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_fields_read_keys_attributes_methods_and_paths_without_raising() -> None:
    from dataclasses import dataclass

    from cdptrack.observe.fields import call_method, first_field, read_field, read_path

    @dataclass
    class Category:
        name: str

    class Product:
        title = "Tea"
        category = Category("Green")

        @property
        def price(self) -> float:
            raise RuntimeError("lazy relation failed")

        def get_absolute_url(self) -> str:
            return "/p/tea"

        def broken(self) -> str:
            raise ValueError("no")

    product = Product()
    assert read_field({"price": 3}, "price") == 3
    assert read_field(product, "price") is None  # a failing property is absent, not raised
    assert first_field(product, ("name", "title")) == "Tea"
    assert read_path(product, "category.name") == "Green"
    assert read_path({"category": {"name": "Black"}}, "category.name") == "Black"
    assert read_path(product, "category.missing.name") is None
    assert call_method(product, "get_absolute_url") == "/p/tea"
    assert call_method(product, "broken") is None
    assert call_method({"get_absolute_url": lambda: "x"}, "get_absolute_url") is None
