"""README's configuration table held to the code: every variable the code reads, and its default."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from entrypoints.config.settings import RATE_LIMIT_DEFAULTS, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the service's own code lives; tests and benchmarks read variables of their own.
SOURCE_FOLDERS = ("domain", "application", "adapters", "entrypoints")
TABLE_HEADING = "## Configuration (environment)"
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def readme_table() -> dict[str, list[str]]:
    """The rows of the first table under the configuration heading: variable -> other cells."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert TABLE_HEADING in text, f"README.md has no {TABLE_HEADING!r} section"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            if rows:
                break  # the table ended
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        name = re.fullmatch(r"`([A-Z0-9_]+)`", cells[0])
        assert name, f"one variable per row, in backquotes: {line}"
        assert name.group(1) not in rows, f"{name.group(1)} has two rows"
        rows[name.group(1)] = cells[1:]
    return rows


def _reads_environment(node: ast.expr) -> bool:
    # `env`, `os.environ`, `environ`, `self._env`…: whatever mapping the code names for it.
    return "env" in ast.unparse(node).lower()


def _names_read(tree: ast.AST) -> set[str]:
    """Variable names the code reads: `env.get("X")`, `os.environ["X"]`, `os.getenv("X")`,
    and a helper handed the environment and a name, as in `_int(env, "PORT", 8000)`."""
    found: set[str] = set()
    for node in ast.walk(tree):
        candidates: list[ast.expr] = []
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "getenv") and node.args:
                if func.attr == "getenv" or _reads_environment(func.value):
                    candidates.append(node.args[0])
            for before, after in zip(node.args, node.args[1:]):
                if isinstance(before, (ast.Name, ast.Attribute)) and _reads_environment(before):
                    candidates.append(after)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _reads_environment(node.value):
                candidates.append(node.slice)
        for candidate in candidates:
            if isinstance(candidate, ast.Constant) and isinstance(candidate.value, str):
                if ENV_NAME.fullmatch(candidate.value):
                    found.add(candidate.value)
    return found


def names_the_code_reads() -> dict[str, list[str]]:
    """Variable name -> the files that read it."""
    readers: dict[str, list[str]] = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name in _names_read(tree):
                readers.setdefault(name, []).append(str(path.relative_to(REPO_ROOT)))
    return readers


def documented_default(value: object) -> str | None:
    """How the table writes a default: None where it must say "unset"."""
    if value is None or value == "" or value == ():
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 10 seconds, however the code holds it
    return str(value)


def settings_defaults() -> dict[str, object]:
    """Variable -> the default of its Settings field (the field is the name in lower case; the
    rate limits are one field, a variable per route class)."""
    defaults = Settings()
    found: dict[str, object] = {
        f.name.upper(): getattr(defaults, f.name) for f in dataclasses.fields(Settings) if f.name != "rate_limits"
    }
    for name, rate in RATE_LIMIT_DEFAULTS.values():
        found[name] = f"{rate.requests}/{'s' if rate.per_seconds == 1 else 'min'}"
        assert rate.per_seconds in (1, 60) and rate.burst == rate.requests, "say it in the table"
    return found


def test_the_scan_finds_what_the_settings_read() -> None:
    # Guards the guard: a scan that found nothing would let every other test here pass.
    read = names_the_code_reads()
    assert {"DATABASE_URL", "API_TOKENS", "PORT", "METRICS_TOKEN_REQUIRED"} <= read.keys(), read


def test_every_variable_the_code_reads_has_a_row() -> None:
    missing = {
        name: files for name, files in names_the_code_reads().items() if name not in readme_table()
    }
    assert not missing, (
        "add a row to the README table under "
        f"{TABLE_HEADING!r} for each (variable: files that read it): {missing}"
    )


def test_every_row_is_a_variable_the_code_reads() -> None:
    stale = readme_table().keys() - names_the_code_reads().keys()
    assert not stale, f"README documents variables nothing reads: {sorted(stale)}"


def test_every_row_has_a_meaning_a_default_and_accepted_values() -> None:
    for name, cells in readme_table().items():
        assert len(cells) == 3 and all(cells), f"{name}: meaning | default | accepted values"


@pytest.mark.parametrize("name", sorted(settings_defaults()))
def test_the_documented_default_is_the_code_default(name: str) -> None:
    table = readme_table()
    assert name in table, f"Settings.{name.lower()} has no README row {name!r}"
    cell = table[name][1]
    expected = documented_default(settings_defaults()[name])
    if expected is None:
        assert cell.startswith("unset"), (
            f"{name}: the default column should start with 'unset': {cell}"
        )
        return
    shown = re.search(r"`([^`]*)`", cell)
    assert shown and shown.group(1) == expected, (
        f"{name}: README says {cell!r}, the code {expected!r}"
    )


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    # The table documents Settings()' defaults; from_env must fall back to the same ones.
    assert Settings.from_env({}) == Settings()
