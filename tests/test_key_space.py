"""Nothing but meshruntime.keys spells a Redis key, stream or channel name of the mesh.

The portal and the runtimes meet in Redis; a name spelled by hand in one place drifts from the
others without any test of one side noticing. So this test reads the project's Python source
and fails on every spelling outside the key module, naming the file and the line:

- a string holding the default prefix ``mesh:`` (use ``meshruntime.keys.DEFAULT_PREFIX``);
- a string that starts like a name of the key space (``"config:latest"``, ``f"topic:{name}"``,
  ``"push:lock"``: the shape of a key, without its prefix);
- an f-string that begins with a prefix followed by such a name (``f"{prefix}dlq:{id}"``,
  ``f"{self.prefix}runtimes"``, ``f"{prefix}*"``), or with a key followed by a suffix of the
  key space (``f"{status_key(prefix, id)}:lock"``);
- a string handed to a helper named ``key`` (``key("runtimes")``).

Docstrings may describe the names (they are documentation, and say ``<prefix>topic:<topic>``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEY_MODULE = ROOT / "meshruntime" / "keys.py"
SOURCES = ["meshruntime", "meshadmin", "topics", "subscriptions", "governance", "tracing", "benchmarks"]

# The first word of every name in the key space; a key has no space in it, a log line has.
_NAME = r"(?:config|topic|dlq|journey|tap|refusals|delivery|redeliver|push|runtimes|charts|routing)"
_UNPREFIXED_KEY = re.compile(rf"^{_NAME}:\S*$")
_AFTER_PREFIX = re.compile(rf"^(?:{_NAME}:|config$|runtimes$|refusals$|\*$)")
_SUFFIX = re.compile(r"^:(?:lock|patch|m:|watch:)")
_DEFAULT_PREFIX = re.compile(r"(?<![\w.-])mesh:(?!\s)")  # not "the event mesh: topics, ..."


def source_files() -> list[Path]:
    """The project's Python source: the listed folders and every Django app (a new app included)."""
    roots = set(SOURCES) | {path.parent.name for path in ROOT.glob("*/apps.py")}
    return sorted(path for root in roots for path in (ROOT / root).rglob("*.py")
                  if ".venv" not in path.parts and path != KEY_MODULE)


def _docstrings(tree: ast.AST) -> set[int]:
    """``id()`` of every docstring constant in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _mentions(node: ast.expr, *words: str) -> bool:
    return any(word in ast.unparse(node).lower() for word in words)


def _fstring_spelling(node: ast.JoinedStr) -> str | None:
    parts = node.values
    first, second = parts[0], parts[1] if len(parts) > 1 else None
    follows = str(second.value) if isinstance(first, ast.FormattedValue) and isinstance(second, ast.Constant) else None
    if any(_DEFAULT_PREFIX.search(part.value) for part in parts if isinstance(part, ast.Constant)):
        return f"the default prefix in {ast.unparse(node)}"
    if isinstance(first, ast.Constant) and _UNPREFIXED_KEY.match(first.value):
        return f"a key name in {ast.unparse(node)}"
    if follows is not None and _mentions(first.value, "prefix") and _AFTER_PREFIX.match(follows):
        return f"a key spelled after its prefix in {ast.unparse(node)}"
    if follows is not None and _mentions(first.value, "prefix", "key") and _SUFFIX.match(follows):
        return f"a key's suffix spelled in {ast.unparse(node)}"
    return None


def _is_call_of_key(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return False
    name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
    return name == "key" and isinstance(node.args[0].value, str)


def key_spellings(source: str, filename: str = "<source>") -> Iterator[tuple[int, str]]:
    """``(line, why)`` for every key name spelled in ``source``."""
    tree = ast.parse(source, filename)
    skip = _docstrings(tree)  # and the strings already judged as part of something larger
    for node in ast.walk(tree):  # breadth first: an f-string or a call comes before its strings
        if isinstance(node, ast.JoinedStr):
            skip.update(id(part) for part in node.values)
            why = _fstring_spelling(node)
        elif _is_call_of_key(node):
            skip.add(id(node.args[0]))
            why = f"a key name handed to {ast.unparse(node)}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            why = (f"the default prefix in {node.value!r}" if _DEFAULT_PREFIX.search(node.value)
                   else f"a key name in {node.value!r}" if _UNPREFIXED_KEY.match(node.value) else None)
        else:
            why = None
        if why is not None:
            yield node.lineno, why


def test_no_module_but_the_key_module_spells_a_key() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {why}"
             for path in source_files() for line, why in key_spellings(path.read_text(), str(path))]
    assert not found, "Redis key names belong to meshruntime/keys.py (KeySpace):\n" + "\n".join(found)


def test_the_scan_covers_the_runtime_the_portal_and_the_benchmarks() -> None:
    files = {path.relative_to(ROOT).as_posix() for path in source_files()}
    assert {"meshruntime/tap.py", "rollout/push.py", "rollout/redis_keys.py", "subscriptions/delivery.py",
            "benchmarks/publish.py", "meshadmin/settings/base.py"} <= files
    assert "meshruntime/keys.py" not in files


@pytest.mark.parametrize("code", [
    'stream = f"{prefix}topic:{name}"',
    'stream = f"{self.prefix}runtimes"',
    'channel = f"{settings.MESH_KEY_PREFIX}config"',
    'pattern = f"{key_prefix}*"',
    'key = f"config:{version}:patch"',
    'client.get(key("push:lock"))',
    'client.get(key("config:latest"))',
    'PREFIX = "mesh:"',
    'stream = f"mesh:dlq:{sub}"',
    'def f():\n    x = 1\n    return "mesh:journey:" + x',
    'lock = f"{status_key(self.prefix, spec.id)}:lock"',
    'stream = push.key("runtimes")',
])
def test_it_finds_a_key_spelled_by_hand(code: str) -> None:
    assert [line for line, _why in key_spellings(code)] == [code.count("\n") + 1]


@pytest.mark.parametrize("code", [
    '"""Reads ``<prefix>topic:<topic>``, ``mesh:dlq:<id>``."""',
    'log.debug("tap: publish failed: %s", error)',
    'raise ConfigError(f"{path}.topic: no topic named {name!r}")',
    'raise AuthError(f"key {prefix} does not match")',
    'token = f"mk_{prefix}_{secret}"',
    'url = reverse("meshconfig:configversion_list")',
    'title = "Govern the event mesh: topics, subscriptions and rules."',
    'payload = {"runtimes": rows, "topic": name}',
    'queue = f"{PREFIX}push"',
    'scan = f"*{PREFIX}*"',
    'stream = keys.topic(name)',
])
def test_it_leaves_other_strings_alone(code: str) -> None:
    assert list(key_spellings(code)) == []
