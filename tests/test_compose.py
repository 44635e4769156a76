"""docker-compose.yml, the Dockerfile and .dockerignore, validated without Docker.

No Docker engine runs where the tests run, so ``docker compose up`` itself is never tried here:
these tests read the files and check what would make the stack fail or misbehave. Every
service has a healthcheck (the one-shot ``setup`` excepted, which the others wait for to exit 0)
and waits for what it needs to be healthy; every command names a program, module, management
command and flags that exist (parsed with the commands' own parsers); the image runs as an
unprivileged user; the build context leaves out .venv, data/ and .git; the stack's environment
makes valid production settings, with plain HTTP only because it says so.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

from meshruntime.__main__ import build_parser as runtime_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
OUR_IMAGE = "meshadmin:latest"
#: Programs of the images that are not ours, as their images ship them.
THIRD_PARTY_PROGRAMS = {"postgres": {"pg_isready"}, "redis": {"redis-server", "redis-cli"},
                        "prom/prometheus": {"prometheus", "wget"}}
#: What a command of only --flags is given to: the image's entrypoint.
ENTRYPOINTS = {"prom/prometheus": "prometheus"}


def ours(service: dict) -> bool:
    return service.get("image") == OUR_IMAGE


def one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def commands_of(service: dict) -> list[list[str]]:
    """The command lines a service runs: its command (``sh -c`` scripts split at ``&&``) and its
    healthcheck's (``CMD-SHELL`` pipelines split at ``|``)."""
    lines = []
    command = service.get("command")
    if command:
        lines += _split(command)
    test = service.get("healthcheck", {}).get("test")
    if test:
        lines += _split(test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]])
    return lines


def _split(command: list[str] | str) -> list[list[str]]:
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] == ["sh", "-c"]:
        script = command[2].replace("$$", "$")
        return [shlex.split(part) for part in re.split(r"&&|\|", script) if part.strip()]
    return [command]


def test_every_service_has_a_healthcheck_and_the_one_shot_setup_is_awaited_to_its_end():
    for name, service in SERVICES.items():
        if one_shot(service):
            waiting = [other for other, s in SERVICES.items() if name in s.get("depends_on", {})]
            assert waiting, f"{name} runs once and nobody waits for it"
            for other in waiting:
                assert SERVICES[other]["depends_on"][name] == {"condition": "service_completed_successfully"}, other
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name} has no healthcheck"


def test_services_start_only_after_what_they_need_is_healthy():
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on as a list waits for nothing but the start"
        for needed, condition in depends.items():
            expected = "service_completed_successfully" if one_shot(SERVICES[needed]) else "service_healthy"
            assert condition == {"condition": expected}, (name, needed)
    setup = SERVICES["setup"]
    assert "migrate" in str(setup["command"]) and set(setup["depends_on"]) == {"postgres", "redis"}

    def needs(name: str, seen=()) -> set[str]:
        assert name not in seen, f"a dependency cycle through {name}"
        direct = set(SERVICES[name].get("depends_on", {}))
        return direct.union(*(needs(d, (*seen, name)) for d in direct))

    for name, service in SERVICES.items():
        lines = commands_of({"command": service.get("command")}) if service.get("command") else []
        django = any(line[0] in ("uvicorn", "celery") or line[:2] == ["python", "manage.py"] for line in lines)
        if django:
            assert {"postgres", "redis"} <= needs(name), f"{name} uses PostgreSQL and Redis without waiting for them"
        if "MESH_STORE_URL" in service.get("environment", {}):
            assert "redis" in needs(name), f"{name} stores events in Redis without waiting for it"


def test_the_whole_mesh_is_there():
    commands = {name: " ".join(map(str, service.get("command", []))) for name, service in SERVICES.items()}
    assert {"postgres", "redis", "setup", "portal", "worker", "beat", "ingester", "subscriber", "producer",
            "prometheus"} <= set(SERVICES)
    assert "ingest-heartbeats" in commands["ingester"]
    assert " worker " in commands["worker"] + " " and " beat " in commands["beat"]
    runtimes = [name for name, command in commands.items() if command.startswith("meshruntime ")]
    assert len(runtimes) >= 1
    subscribing = {"shipping-service"}  # the demo's subscribing application (meshadmin.demo.RUNTIMES)
    assert subscribing <= {runtime_parser().parse_args(SERVICES[r]["command"][1:]).application for r in runtimes}


def _check_command(name: str, service: dict, line: list[str]) -> None:
    program, *args = line
    if not ours(service):
        image = service["image"].split(":")[0]
        if program.startswith("-"):
            program = ENTRYPOINTS[image]
        assert program in THIRD_PARTY_PROGRAMS[image], f"{name}: {program} is not known to be in {image}"
        return
    if program == "python" and args[:1] == ["manage.py"]:
        command, *rest = args[1:]
        assert command in get_commands(), f"{name}: manage.py has no command {command!r}"
        load_command_class(get_commands()[command], command).create_parser("manage.py", command).parse_args(rest)
    elif program == "python" and args[:1] == ["-m"]:
        module = args[1]
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        if module == "meshadmin.healthcheck":
            _healthcheck_parser_accepts(args[2:])
    elif program == "meshruntime":
        runtime_parser().parse_args(args)
    elif program == "uvicorn":
        module, _, attribute = args[0].partition(":")
        assert importlib.util.find_spec(module) is not None and attribute, f"{name}: {args[0]}"
    elif program == "celery":
        assert args[:2] == ["-A", "meshadmin"] and args[2] in ("worker", "beat", "inspect"), f"{name}: {line}"
    else:
        raise AssertionError(f"{name}: {program} is not a program of the image")
    assert shutil.which(program, path=os.path.dirname(sys.executable)) or program == "python", program


def _healthcheck_parser_accepts(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "meshadmin.healthcheck", *args, "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_command_names_a_program_module_command_and_flags_that_exist(name):
    for line in commands_of(SERVICES[name]):
        _check_command(name, SERVICES[name], line)


def test_prometheus_reads_the_configuration_setup_writes():
    setup = " ".join(SERVICES["setup"]["command"])
    written = re.search(r"prometheus_config .*--dir (\S+)", setup).group(1)
    read = next(arg for arg in SERVICES["prometheus"]["command"] if arg.startswith("--config.file="))
    assert read == f"--config.file={written}/prometheus.yml"
    assert "--portal-url http://portal:8000" in setup
    assert "portal" in SERVICES["setup"]["environment"]["ALLOWED_HOSTS"]  # Prometheus reaches it by that name
    assert SERVICES["prometheus"]["user"] == "10001:10001"  # the token file is its owner's only: the image's user


def test_the_files_it_names_exist():
    assert (ROOT / SERVICES["portal"]["build"] / "Dockerfile").is_file()
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in COMPOSE["volumes"] or (ROOT / source).exists(), volume


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_runs_as_an_unprivileged_user():
    instructions = dockerfile_instructions()
    users = [(i, value) for i, (name, value) in enumerate(instructions) if name == "USER"]
    assert users, "the image runs as root"
    index, user = users[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert all(name not in ("RUN", "COPY", "ADD") for name, _ in instructions[index + 1:])
    assert re.search(rf"useradd .*--uid (\d+) .*{user.split(':')[0]}", " ".join(v for _, v in instructions))
    for name, service in SERVICES.items():
        if ours(service):
            assert "user" not in service, f"{name} overrides the image's user"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these paths: a pattern matches the path or one of its parents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.lstrip("/")) or fnmatch.fnmatch(prefix, pattern.replace("**/", ""))
               for pattern in patterns for prefix in prefixes)


def test_the_build_context_leaves_out_environments_data_and_history():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", "data/redis/appendonly.aof", ".git/HEAD", "staticfiles/x.css",
                 "meshadmin/__pycache__/models.cpython-311.pyc"):
        assert _ignored(path, patterns), path
    for path in ("manage.py", "meshadmin/settings/base.py", "static/meshadmin/meshadmin.css", "pyproject.toml"):
        assert not _ignored(path, patterns), path


def stack_environment(service: str, **override: str) -> dict[str, str]:
    """The service's environment as compose would give it (``${VAR:-default}`` at its default)."""
    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)(?::[-?]([^}]*))?\}", lambda m: override.get(m.group(1), m.group(2) or ""), value)

    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**base, **{k: expand(str(v)) for k, v in SERVICES[service]["environment"].items()}, **override}


def production_setting(environment: dict[str, str], *names: str) -> list[str]:
    script = ("import meshadmin, django; django.setup(); from django.conf import settings; "
              f"print(*[getattr(settings, n) for n in {list(names)!r}])")
    result = subprocess.run([sys.executable, "-c", script], env=environment, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_stack_allows_plain_http_because_it_says_so_and_production_does_not():
    names = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS")
    local = stack_environment("portal", SECRET_KEY="k" * 50)
    assert local["MESHADMIN_ALLOW_PLAIN_HTTP"] == "true"
    assert production_setting(local, *names) == ["False", "False", "False", "0"]
    behind_tls = {**local, "MESHADMIN_ALLOW_PLAIN_HTTP": "false"}
    assert production_setting(behind_tls, *names) == ["True", "True", "True", "31536000"]
    unsaid = {k: v for k, v in local.items() if k != "MESHADMIN_ALLOW_PLAIN_HTTP"}
    assert production_setting(unsaid, *names) == ["True", "True", "True", "31536000"]
    result = subprocess.run([sys.executable, "-c", "import meshadmin, django; django.setup()"],
                            env={**local, "MESHADMIN_ALLOW_PLAIN_HTTP": "sometimes"}, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "MESHADMIN_ALLOW_PLAIN_HTTP='sometimes' is not a boolean" in result.stderr


def test_the_stacks_environment_passes_djangos_checks():
    environment = stack_environment("portal", SECRET_KEY="k" * 50)
    result = subprocess.run([sys.executable, "manage.py", "check"], env=environment, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_healthchecks_tell_healthy_from_not(tmp_path, live_server, transactional_db):
    """meshadmin.healthcheck against real things: the live portal's /healthz, a closed port, a file."""
    def run(*args: str, stdin: str = "") -> int:
        return subprocess.run([sys.executable, "-m", "meshadmin.healthcheck", *args], input=stdin, cwd=ROOT,
                              capture_output=True, text=True, timeout=60).returncode

    host, port = live_server.url.removeprefix("http://").split(":")
    assert run("http", f"{live_server.url}/healthz", "--contains", '"ok"') == 0
    assert run("http", f"{live_server.url}/healthz", "--contains", "missing") == 1
    assert run("http", f"{live_server.url}/no-such-page") == 1
    assert run("tcp", f"{host}:{port}") == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert run("tcp", f"127.0.0.1:{closed}") == 1
    (tmp_path / "schedule.db").write_text("x")
    assert run("fresh", str(tmp_path / "schedule*"), "60") == 0
    os.utime(tmp_path / "schedule.db", (0, 0))
    assert run("fresh", str(tmp_path / "schedule*"), "60") == 1
    assert run("runtimes", stdin='{"latest": null, "runtimes": [{"state": "healthy"}]}') == 0
    assert run("runtimes", stdin='{"latest": null, "runtimes": [{"state": "gone"}]}') == 1
    assert run("runtimes", stdin="not json") == 1
