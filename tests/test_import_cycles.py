"""No import circle anywhere in the project.

A circle between modules means neither can be read, tested or moved without the other, and
Python resolves it only by the order of imports. Every ``.py`` file of the repository is read
with ``ast`` (nothing is imported); every import counts, at module level or inside a function
(a function-local import that hides a circle is still a circle), except those under
``if TYPE_CHECKING:``, which never run. A failure names each circle as a path of modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".venv", "venv", "data", "staticfiles", "static", "node_modules", "build", "dist", "__pycache__"}


def project_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name → file, for every Python file of the project."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in SKIPPED_DIRS or part.startswith(".") or part.endswith(".egg-info") for part in parts[:-1]):
            continue
        names = list(path.relative_to(root).with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        if names:
            files[".".join(names)] = path
    return files


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def imported_names(module: str, path: Path) -> set[str]:
    """The dotted names ``module`` imports: ``import a.b`` gives a.b; ``from a import b`` gives
    a and a.b (b may be a module or a name in a); relative imports are resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project modules it imports. An import of a package from inside it (``from .
    import x`` in a package's module) is not an edge to the package's ``__init__``."""

    def owner(name: str) -> str | None:
        while name:
            if name in files:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {module: set() for module in files}
    for module, path in files.items():
        for name in imported_names(module, path):
            target = owner(name)
            if target is None or target == module or module.startswith(target + "."):
                continue
            graph[module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component with more than one module, as a path that
    starts and ends at the same module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
    return [_path_through(component, graph) for component in components]


def _path_through(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest circle through the component's first module (breadth-first)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {start}")  # unreachable for a strongly connected component


def test_no_module_of_the_project_is_part_of_an_import_circle():
    found = circles(import_graph(project_files()))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in found)


# The walker itself, on small projects made for it


def _project(tmp_path: Path, modules: dict[str, str]) -> dict[str, set[str]]:
    for name, source in modules.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return import_graph(project_files(tmp_path))


@pytest.mark.parametrize("modules, expected", [
    pytest.param({"app/__init__.py": "", "app/a.py": "from app import b\n", "app/b.py": "from app.a import x\n"},
                 [["app.a", "app.b", "app.a"]], id="absolute"),
    pytest.param({"app/__init__.py": "", "app/a.py": "from . import b\n", "app/b.py": "from .c import y\n",
                  "app/c.py": "def f():\n    from .a import z\n"},
                 [["app.a", "app.b", "app.c", "app.a"]], id="relative, hidden in a function"),
    pytest.param({"app/__init__.py": "", "app/sub/__init__.py": "", "app/a.py": "import app.sub.b\n",
                  "app/sub/b.py": "from ..a import x\n"},
                 [["app.a", "app.sub.b", "app.a"]], id="parent package"),
])
def test_the_walker_names_a_circle(tmp_path, modules, expected):
    assert circles(_project(tmp_path, modules)) == expected


def test_the_walker_ignores_type_checking_imports_and_a_package_importing_its_own_modules(tmp_path):
    graph = _project(tmp_path, {
        "app/__init__.py": "from .a import x\n",
        "app/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.b import y\nx = 1\n",
        "app/b.py": "from . import a\nfrom app import a as again\n",
    })
    assert graph == {"app": {"app.a"}, "app.a": set(), "app.b": {"app.a"}}
    assert circles(graph) == []
