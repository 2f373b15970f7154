"""The container deployment, as far as it can be checked without Docker: the Dockerfile's install
replayed in a fresh venv, its health check run, the compose file and the balancer's config."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from entrypoints.http.app import MAX_BODY_BYTES
from tests.integration.conftest import REPO_ROOT, ServerProcess, free_port, server_env
from tests.unit.test_configuration_table import readme_table

INSTALL_TIMEOUT = 300.0  # seconds; about 20 s of CPU, minutes of waiting on a busy machine


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments), one list per stage."""
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)  # continuation lines
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def copied_sources() -> list[str]:
    """What the Dockerfile copies from the build context (not from another stage)."""
    sources: list[str] = []
    for stage in dockerfile_stages():
        for arguments in instructions(stage, "COPY"):
            if arguments.startswith("--from"):
                continue
            *parts, _destination = arguments.split()
            sources += parts
    return sources


def healthcheck_command() -> list[str]:
    final = dockerfile_stages()[-1]
    (healthcheck,) = instructions(final, "HEALTHCHECK")
    return json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def instances() -> dict[str, dict]:
    """The compose services that run the service's image."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("build") == "."
    }


def nginx_config() -> str:
    return (REPO_ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")


# --- the Dockerfile -----------------------------------------------------------------------------


def test_the_images_are_slim_python_pinned_by_tag() -> None:
    for stage in dockerfile_stages():
        (base,) = instructions(stage, "FROM")
        image = base.split()[0]
        assert re.fullmatch(r"python:3\.1[12]\.\d+-slim(-\w+)?", image), image


def test_the_image_runs_the_server_unprivileged_on_all_interfaces() -> None:
    final = dockerfile_stages()[-1]
    (user,) = instructions(final, "USER")
    assert user not in ("root", "0", "0:0")
    assert instructions(final, "EXPOSE") == ["8000"]
    env = " ".join(instructions(final, "ENV"))
    assert re.search(r"\bHOST=0\.0\.0\.0\b", env), env
    (command,) = instructions(final, "CMD")
    assert json.loads(command) == ["python", "-m", "entrypoints", "serve"]


def test_the_image_installs_the_project_with_its_constraints_and_no_test_tools() -> None:
    runs = [arguments for stage in dockerfile_stages() for arguments in instructions(stage, "RUN")]
    installs = [run for run in runs if "pip install" in run]
    assert len(installs) == 1 and re.search(r"pip install -c constraints\.txt \.$", installs[0]), (
        installs
    )
    assert "[test]" not in (REPO_ROOT / "Dockerfile").read_text()


def test_the_health_check_asks_health_with_python_alone() -> None:
    command = healthcheck_command()
    assert (
        command[:2] == ["python", "-c"]
        and "urllib.request" in command[2]
        and "/health" in command[2]
    )


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is left out but what is let in"
    let_in = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert let_in == {source.rstrip("/") for source in copied_sources()}


# --- docker-compose.yml and the balancer ---------------------------------------------------------


def test_compose_runs_two_instances_on_postgres_and_redis_behind_a_balancer() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["image"].startswith("redis:")
    assert services["redis"]["healthcheck"]["test"]
    assert len(instances()) == 2
    for name, instance in instances().items():
        assert instance["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name
        env = instance["environment"]
        assert (
            env["DATABASE_URL"].startswith("postgresql://")
            and "@postgres:5432/" in env["DATABASE_URL"]
        )
        assert env["CACHE_URL"] == "redis://redis:6379/0"
        # Required, never generated: instances with tokens of their own would refuse each
        # other's clients.
        assert env["API_TOKENS"].startswith("${API_TOKENS:?")
    balancer = services["balancer"]
    assert balancer["image"].startswith("nginx:")
    assert balancer["ports"] == ["8000:8000"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in balancer["volumes"]
    assert balancer["depends_on"] == {
        name: {"condition": "service_healthy"} for name in instances()
    }


def test_compose_images_are_pinned_by_tag() -> None:
    for name, service in compose()["services"].items():
        if "build" not in service:
            assert re.fullmatch(r"[a-z]+:\d+(\.\d+)+(-\w+)?", service["image"]), (
                name,
                service["image"],
            )


def test_compose_sets_only_documented_settings() -> None:
    documented = readme_table()
    for instance in instances().values():
        assert set(instance["environment"]) <= documented.keys(), instance["environment"]


def test_the_env_example_sets_what_compose_asks_for() -> None:
    example = (REPO_ROOT / ".env.example").read_text()
    asked = set(re.findall(r"\$\{(\w+)", (REPO_ROOT / "docker-compose.yml").read_text()))
    given = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert asked == given


def test_the_balancer_sends_to_every_instance() -> None:
    config = nginx_config()
    (upstream, servers) = re.search(r"upstream (\w+) \{(.*?)\}", config, re.DOTALL).groups()
    assert re.findall(r"^\s*server (\S+?):8000\b", servers, re.MULTILINE) == sorted(instances())
    assert f"proxy_pass http://{upstream};" in config
    # No balancing method named: nginx's default, round robin.
    assert not re.search(r"^\s*(least_conn|ip_hash|hash|random)\b", servers, re.MULTILINE)
    size = re.search(r"client_max_body_size (\d+)m;", config)
    assert size and int(size.group(1)) * 1024 * 1024 > MAX_BODY_BYTES


def _nginx() -> str | None:
    # Not NGINX: nginx itself takes that variable for sockets inherited on a binary upgrade.
    return os.environ.get("NGINX_BINARY") or shutil.which("nginx")


@pytest.mark.skipif(_nginx() is None, reason="no nginx here (set NGINX_BINARY to one)")
def test_the_balancer_config_round_robins_between_two_real_instances(
    tmp_path: Path, start_servers: Callable[..., list[ServerProcess]]
) -> None:
    settings = {"DATABASE_URL": "memory://", "API_TOKENS": "t1"}
    first, second = start_servers(settings, settings, timeout=60)  # and nginx, on a busy machine
    port = free_port()
    config = nginx_config().replace("listen 8000;", f"listen 127.0.0.1:{port};")
    config = config.replace("server app1:8000", f"server 127.0.0.1:{first.port}")
    config = config.replace("server app2:8000", f"server 127.0.0.1:{second.port}")
    (tmp_path / "default.conf").write_text(config)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/default.conf;\n"
        + "".join(
            f"{kind}_temp_path {tmp_path}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + "}\n"
    )
    nginx = subprocess.Popen(
        [_nginx(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert nginx.poll() is None, nginx.stderr.read()
                assert time.monotonic() < deadline, "nginx does not answer"
                time.sleep(0.05)

        def health_count(server: ServerProcess) -> float:
            metrics = httpx.get(
                f"{server.base_url}/metrics", headers={"Authorization": "Bearer t1"}
            ).text
            found = re.search(
                r"experiments_http_requests_total\{[^}]*"
                r'route="/health"[^}]*status="200"[^}]*\} (\S+)',
                metrics,
            )
            return float(found.group(1)) if found else 0.0

        before = [health_count(first), health_count(second)]
        with httpx.Client(base_url=base) as client:
            for _ in range(20):
                assert client.get("/health").json() == {"status": "ok"}
            refused = client.get("/experiments")
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        served = [health_count(first) - before[0], health_count(second) - before[1]]
        assert served == [10, 10], served
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


# --- the image's install, replayed in a fresh venv -----------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv built as the image's build stage builds one: a build context of exactly what the
    Dockerfile copies, then its one pip install (pip's cache is used here, not in the image)."""
    root = tmp_path_factory.mktemp("image")
    context = root / "src"
    context.mkdir()
    for source in copied_sources():
        origin = REPO_ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(origin, context / source)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    (install,) = [
        arguments
        for stage in dockerfile_stages()
        for arguments in instructions(stage, "RUN")
        if "pip install" in arguments
    ]
    command = shlex.split(install)
    command[0] = str(venv / "bin" / "pip")  # /opt/venv/bin/pip in the image
    # Compiling every module to bytecode is a third of the install's CPU and decides nothing
    # about whether the install works.
    command.insert(command.index("install") + 1, "--no-compile")
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_NO_CACHE_DIR", "PYTHONPATH")}
    done = subprocess.run(
        command, cwd=context, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv


def image_env(**settings: str) -> dict[str, str]:
    """As in the container: the installed package only, nothing from the checkout."""
    env = server_env(**settings)
    env.pop("PYTHONPATH", None)
    return env


def test_the_installed_image_migrates_a_fresh_sqlite_database(
    installed: Path, tmp_path: Path
) -> None:
    python = installed / "bin" / "python"
    database = tmp_path / "experiments.db"
    # Run from an empty directory, as the image runs in /app: no source tree to import from.
    done = subprocess.run(
        [str(python), "-m", "entrypoints", "migrate"],
        cwd=tmp_path,
        env=image_env(DATABASE_URL=f"sqlite:///{database}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert database.is_file()
    imported = subprocess.run(
        [
            str(python),
            "-c",
            "import entrypoints.asgi, uvicorn, uvloop, httptools, asyncpg, psycopg, redis;"
            "import entrypoints; print(entrypoints.__file__)",
        ],
        cwd=tmp_path,
        env=image_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert str(installed) in imported.stdout, "imported from the checkout, not the install"


def test_the_installed_image_has_no_test_tools(installed: Path) -> None:
    listed = subprocess.run(
        [str(installed / "bin" / "pip"), "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert not names & {"pytest", "pytest-cov", "pytest-asyncio", "hypothesis", "statsmodels"}, (
        names
    )


def test_the_health_check_passes_on_a_running_server_and_fails_without_one(
    installed: Path, tmp_path: Path
) -> None:
    port = str(free_port())
    env = image_env(DATABASE_URL="memory://", API_TOKENS="t1", PORT=port)
    python = installed / "bin" / "python"
    server = ServerProcess(env, tmp_path, python=python, cwd=tmp_path)
    command = healthcheck_command()
    command[0] = str(python)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(command, env=env, capture_output=True, timeout=30).returncode != 0:
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.2)
        # The results pages' templates and files are in the installed package too.
        form = httpx.get(f"{server.base_url}/ui/sign-in", timeout=10)
        assert form.status_code == 200 and 'name="api_key"' in form.text
        for asset in re.findall(r'href="(/ui/assets/[^"]+)"', form.text):
            assert httpx.get(f"{server.base_url}{asset}", timeout=10).status_code == 200, asset
    finally:
        server.stop()
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode != 0
