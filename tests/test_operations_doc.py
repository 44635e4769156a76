"""docs/operations.md, the guide to running the portal outside the demo: linked from the README,
and every command, flag and API path it tells an operator to use exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from django.core.management import get_commands, load_command_class
from django.urls import resolve

from meshruntime.__main__ import build_parser as runtime_parser

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "operations.md").read_text()


def commands(program: str) -> list[list[str]]:
    """Every command line of the guide that starts with ``program`` (continuations joined)."""
    text = GUIDE.replace("\\\n", " ")
    lines = re.findall(rf"(?:^|`)({re.escape(program)} [^`\n#]*)", text, re.MULTILINE)
    return [shlex.split(line.strip()) for line in lines]


def test_the_readme_links_the_guide():
    assert "(docs/operations.md)" in (ROOT / "README.md").read_text()


def test_every_management_command_it_names_exists_with_its_flags():
    named = commands("python manage.py")
    assert {line[2] for line in named} >= {"migrate", "createsuperuser", "mesh", "collectstatic"}
    for line in named:
        name, args = line[2], line[3:]
        assert name in get_commands(), line
        load_command_class(get_commands()[name], name).create_parser("manage.py", name).parse_args(args)


def test_it_says_how_to_start_every_process_and_that_delivery_needs_the_subscribers_runtime():
    for process in ("uvicorn meshadmin.asgi:application", "celery -A meshadmin worker", "celery -A meshadmin beat",
                    "manage.py mesh ingest-heartbeats", "manage.py mesh push", "manage.py createsuperuser"):
        assert process in GUIDE, process
    assert "*subscribing* application" in GUIDE
    complete = [line for line in commands("meshruntime") if "…" not in line]  # "…" marks a sketch in the table
    assert complete
    for line in complete:
        runtime_parser().parse_args(line[1:])


def test_the_api_paths_it_names_exist():
    for path in re.findall(r"`(?:POST|GET) (/api/v1/[^`]+)`", GUIDE):
        assert resolve(path), path
    assert "POST /api/v1/config-versions/push/" in GUIDE
