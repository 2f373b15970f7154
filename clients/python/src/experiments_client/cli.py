"""`experiments`: the service from a terminal, by URL and key, so it works against any deployment.

Every command talks HTTP to a server: the URL and the bearer credential come from
`--url`/`--token`, else `EXPERIMENTS_URL`/`EXPERIMENTS_TOKEN`, else the config file (`--config`,
`EXPERIMENTS_CONFIG`, or `~/.config/experiments/config.toml`):

    url = "https://experiments.example.com"
    token = "xpk_..."

    [profiles.local]
    url = "http://127.0.0.1:8000"
    token = "dev-token"

`--profile local` (or `EXPERIMENTS_PROFILE`) picks a profile. In the service's own environment,
`python -m entrypoints` answers every command here, and `serve`, `migrate` and
`rebuild-aggregates`, which run on that machine against its database (`DATABASE_URL`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from experiments_client.batching import transient
from experiments_client.client import Client
from experiments_client.errors import ApiError, TransportError
from experiments_client.importing import Importer, ImportFailed
from experiments_client.models import TrackResult

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_FAILED = 1


class CliError(Exception):
    """A failure to report in one line, with exit code 1."""


# ------------------------------------------------------------------------------ configuration


def config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("EXPERIMENTS_CONFIG"):
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "experiments" / "config.toml"


def connection(args: argparse.Namespace) -> tuple[str, str]:
    """(url, token): the flags, else the environment, else the config file's profile."""
    path = config_path(args.config)
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            document = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise CliError(f"cannot read the config file {path}: {exc}") from exc
        profile = args.profile or os.environ.get("EXPERIMENTS_PROFILE")
        settings = {k: v for k, v in document.items() if k in ("url", "token")}
        if profile:
            profiles = document.get("profiles", {})
            if profile not in profiles:
                raise CliError(f"the config file {path} has no profile {profile!r}")
            settings.update(profiles[profile])
    elif args.profile:
        raise CliError(f"--profile needs a config file; {path} does not exist")
    url = args.url or os.environ.get("EXPERIMENTS_URL") or settings.get("url") or DEFAULT_URL
    token = args.token or os.environ.get("EXPERIMENTS_TOKEN") or settings.get("token")
    if not token:
        raise CliError(
            "no credential: pass --token, set EXPERIMENTS_TOKEN, or put token = \"…\" in "
            f"{path}"
        )
    return url, token


def client_of(args: argparse.Namespace) -> Client:
    url, token = connection(args)
    return Client(url, token, timeout=args.timeout)


# ------------------------------------------------------------------------------ output


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


def print_json(value: Any, out: io.TextIOBase | Any = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(to_builtins(value), indent=2, ensure_ascii=False) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns as wide as their widest cell; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def write_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: Any) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([["" if v is None else rfc3339(v) if isinstance(v, datetime) else v for v in row] for row in rows])


# ------------------------------------------------------------------------------ experiments


def read_document(path: str) -> dict[str, Any]:
    """An experiment body from a YAML or JSON file (`-`: standard input)."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    if path.endswith(".json"):
        document = json.loads(text)
    else:
        import yaml

        try:
            document = yaml.safe_load(text)  # YAML is a superset of JSON: either reads
        except yaml.YAMLError as exc:
            raise CliError(f"{path} is neither YAML nor JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CliError(f"{path} must hold one experiment (a mapping of its fields)")
    return document


def cmd_create(args: argparse.Namespace) -> None:
    with client_of(args) as c:
        created = c.create_experiment(read_document(args.file))
    if args.format == "json":
        print_json(created)
    else:
        print(f"created {created.id} ({created.name}), {created.status}")


EXPERIMENT_COLUMNS = ("id", "name", "status", "variants", "coverage", "primary_event_type", "created_at")


def _experiment_row(e: Any) -> list[Any]:
    variants = ", ".join(f"{v.name} {v.traffic_percentage:g}%" for v in e.variants)
    return [e.id, e.name, e.status, variants, e.coverage, e.primary_event_type, e.created_at]


def cmd_list(args: argparse.Namespace) -> None:
    with client_of(args) as c:
        found = [e for e in c.iter_experiments() if args.status is None or e.status == args.status]
    if args.format == "json":
        print_json(found)
    elif args.format == "csv":
        write_csv(EXPERIMENT_COLUMNS, [_experiment_row(e) for e in found], sys.stdout)
    else:
        print(table(EXPERIMENT_COLUMNS, [_experiment_row(e) for e in found]))


def cmd_show(args: argparse.Namespace) -> None:
    with client_of(args) as c:
        e = c.get_experiment(args.experiment_id)
    if args.format == "json":
        print_json(e)
        return
    print(f"{e.name}  ({e.id})")
    print(f"status {e.status}, coverage {e.coverage:g}%, primary event {e.primary_event_type or '-'}")
    if e.description:
        print(e.description)
    print()
    print(table(("variant", "id", "traffic %", "control"),
                [[v.name, v.id, v.traffic_percentage, v.is_control] for v in e.variants]))


def cmd_status(args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {"status": args.status}
    with client_of(args) as c:
        if args.winner is not None:
            variants = c.get_experiment(args.experiment_id).variants
            by_name = {v.name: v.id for v in variants}
            changes["winner_variant_id"] = by_name.get(args.winner, args.winner)
        e = c.update_experiment(args.experiment_id, **changes)
    print(f"{e.name} ({e.id}) is {e.status}")


# ------------------------------------------------------------------------------ results

RESULT_COLUMNS = (
    "variant", "control", "users", "conversions", "rate", "abs_lift", "rel_lift", "p_value", "p_adjusted",
    "ci_lower", "ci_upper", "value_per_user", "value_p",
)


def result_rows(results: Any) -> list[list[Any]]:
    """One row per variant: its counts, and its comparison with the control (none for it)."""
    compared = {c.variant_id: c for c in results.comparisons}
    rows = []
    for v in results.variants:
        c = compared.get(v.variant_id)
        interval = c.confidence_interval if c is not None else None
        rows.append([
            v.variant_name, v.is_control, v.users, v.primary_unique_users, v.primary_conversion_rate,
            c and c.absolute_lift, c and c.relative_lift, c and c.p_value, c and c.p_value_adjusted,
            interval and interval.lower, interval and interval.upper,
            v.value_per_user, c and c.value and c.value.p_value,
        ])
    return rows


QUERY = ("start_date", "end_date", "event_type", "variant_id", "primary_event_type", "method", "correction")


def fetch_results(args: argparse.Namespace) -> Any:
    query = {k: getattr(args, k) for k in (*QUERY, "cuped") if getattr(args, k) is not None}
    with client_of(args) as c:
        return c.results(args.experiment_id, **query)


def render_results(results: Any, format: str, out: Any) -> None:
    if format == "json":
        print_json(results, out)
    elif format == "csv":
        write_csv(RESULT_COLUMNS, result_rows(results), out)
    else:
        e, srm = results.experiment, results.summary.srm
        out.write(f"{e.name} ({e.id}), primary event {results.filters.primary_event_type or 'any'}\n")
        out.write(f"users {results.summary.total_users}, events {results.summary.total_events}")
        out.write(f"; sample ratio {'MISMATCH' if srm.mismatch else 'ok'} (p = {_cell(srm.p_value)})\n\n")
        out.write(table(RESULT_COLUMNS, result_rows(results)) + "\n")


def cmd_results(args: argparse.Namespace) -> None:
    render_results(fetch_results(args), args.format, sys.stdout)


def cmd_export(args: argparse.Namespace) -> None:
    results = fetch_results(args)
    format = args.format or ("json" if args.out and args.out.endswith(".json") else "csv")
    if args.out in (None, "-"):
        render_results(results, format, sys.stdout)
        return
    with open(args.out, "w", newline="") as out:
        render_results(results, format, out)
    print(f"wrote {args.out} ({format})", file=sys.stderr)


# ------------------------------------------------------------------------------ import


def cmd_import(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    path = Path(args.file)
    c = client_of(args)

    def send(events: list[dict[str, Any]]) -> TrackResult:
        """One batch, sent again while the service is away (a restart, a deploy) for up to
        --wait seconds: every event carries its id, so a batch sent twice counts once."""
        deadline, pause = time.monotonic() + args.wait, 0.5
        while True:
            try:
                return c.track(events)
            except (ApiError, TransportError) as failure:
                if not transient(failure) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 10.0)

    try:
        importer = Importer(
            path, send, format=args.format, state_path=args.state and Path(args.state),
            rejects_path=args.rejects and Path(args.rejects), batch_size=args.batch_size,
            concurrency=args.concurrency, experiment_id=args.experiment, restart=args.restart,
        )
    except (ImportFailed, ValueError) as exc:
        c.close()
        raise CliError(str(exc)) from exc
    start = importer.state.offset
    if importer.state.done:
        print(f"{path} was imported already ({importer.state_path}); say --restart to import it again")
        c.close()
        return
    if start:
        print(f"resuming {path} at line {importer.state.line + 1}", file=sys.stderr)
    with c, tqdm(total=path.stat().st_size, initial=start, unit="B", unit_scale=True,
                 desc="importing", file=sys.stderr) as bar:

        def progress(offset: int, state: Any) -> None:
            bar.update(offset - bar.n)
            bar.set_postfix_str(f"events {state.accepted + state.duplicates:,}, rejected {state.rejected:,}", refresh=False)

        try:
            state = importer.run(progress)
        except (ApiError, TransportError, ImportFailed) as exc:
            raise CliError(f"{exc}\nthe import stopped at line {importer.state.line}; "
                           "run the same command again to resume") from exc
    print(f"imported {path}: {state.accepted:,} stored, {state.duplicates:,} already stored (by event_id), "
          f"{state.rejected:,} rejected" + (f" (see {importer.rejects_path})" if state.rejected else ""))


# ------------------------------------------------------------------------------ keys


def cmd_keys_create(args: argparse.Namespace) -> None:
    with client_of(args) as c:
        key = c.create_key(args.name, args.scope, expires_at=args.expires_at)
    if args.format == "json":
        print_json(key)
        return
    print(f"created key {key.id} ({key.name}) with scopes {', '.join(key.scopes)}")
    print(f"secret (shown once; store it now): {key.key}")


KEY_COLUMNS = ("id", "name", "scopes", "created_at", "created_by", "expires_at", "revoked_at")


def cmd_keys_list(args: argparse.Namespace) -> None:
    with client_of(args) as c:
        keys = list(c.iter_keys())
    rows = [[k.id, k.name, " ".join(k.scopes), k.created_at, k.created_by, k.expires_at, k.revoked_at] for k in keys]
    if args.format == "json":
        print_json(keys)
    elif args.format == "csv":
        write_csv(KEY_COLUMNS, rows, sys.stdout)
    else:
        print(table(KEY_COLUMNS, rows))


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    with client_of(args) as c:
        key = c.revoke_key(args.key_id)
    print(f"revoked key {key.id} ({key.name}) at {_cell(key.revoked_at)}")


# ------------------------------------------------------------------------------ the parser


def parser(prog: str = "experiments", extend: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root.add_argument("--url", help=f"the server (default: EXPERIMENTS_URL, the config file, {DEFAULT_URL})")
    root.add_argument("--token", help="a bearer credential: a token of API_TOKENS or an API key "
                      "(default: EXPERIMENTS_TOKEN, the config file)")
    root.add_argument("--profile", help="a [profiles.NAME] of the config file")
    root.add_argument("--config", help="the config file (default: EXPERIMENTS_CONFIG, ~/.config/experiments/config.toml)")
    root.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    commands = root.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, run: Callable[[argparse.Namespace], None], help: str, formats: Sequence[str] = ()) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        if formats:
            sub.add_argument("--format", choices=formats, default=formats[0], help=f"output (default {formats[0]})")
        return sub

    sub = command("create", cmd_create, "Create an experiment from a YAML or JSON file.", ("text", "json"))
    sub.add_argument("file", help="the experiment's fields, as POST /experiments takes them ('-': stdin)")
    sub = command("list", cmd_list, "List experiments, newest first.", ("table", "json", "csv"))
    sub.add_argument("--status", choices=("draft", "running", "paused", "stopped", "archived"))
    sub = command("show", cmd_show, "Show one experiment.", ("text", "json"))
    sub.add_argument("experiment_id")
    sub = command("status", cmd_status, "Change an experiment's status (start, pause, resume, stop, archive).")
    sub.add_argument("experiment_id")
    sub.add_argument("status", choices=("draft", "running", "paused", "stopped", "archived"))
    sub.add_argument("--winner", help="with stopped: the variant to serve everyone (name or id)")
    for name, run, help in (
        ("results", cmd_results, "Show an experiment's results as a table (or JSON, CSV)."),
        ("export", cmd_export, "Write an experiment's results to a file, as CSV or JSON."),
    ):
        sub = command(name, run, help, ("table", "json", "csv") if name == "results" else ())
        sub.add_argument("experiment_id")
        if name == "export":
            sub.add_argument("--out", help="the file (default: stdout); .json picks JSON")
            sub.add_argument("--format", choices=("csv", "json"), help="default: from --out's name, else csv")
        for option in QUERY:
            sub.add_argument("--" + option.replace("_", "-"), dest=option)
        sub.add_argument("--cuped", action="store_const", const=True, default=None,
                         help="adjust the comparisons by the users' pre-period (JSON output carries them)")
    sub = command("import", cmd_import, "Import events from a CSV or JSONL file: batched, resumable, "
                  "rejected lines written to a file with their reasons.")
    sub.add_argument("file")
    sub.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file's name")
    sub.add_argument("--experiment", help="the experiment_id of lines that name none")
    sub.add_argument("--batch-size", type=int, default=5000, help="events per request, 1 to 10,000 (default 5000)")
    sub.add_argument("--concurrency", type=int, default=2, help="requests in flight (default 2)")
    sub.add_argument("--rejects", help="where rejected lines go (default: FILE.rejects.jsonl)")
    sub.add_argument("--state", help="where progress is kept for resuming (default: FILE.import-state)")
    sub.add_argument("--restart", action="store_true", help="import from the start, ignoring saved progress")
    sub.add_argument("--wait", type=float, default=120.0,
                     help="seconds to keep sending a batch while the service is unreachable or "
                          "answers 429 or 5xx, before stopping (resumable) (default 120)")

    keys = commands.add_parser("keys", help="Create, list and revoke API keys (admin).",
                               description="Create, list and revoke API keys (admin).")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="command")
    sub = key_commands.add_parser("create", help="Create a key; its secret is shown once.")
    sub.set_defaults(run=cmd_keys_create)
    sub.add_argument("--name", required=True)
    sub.add_argument("--scope", action="append", required=True, choices=("admin", "assign", "ingest", "read"),
                     help="repeat for several")
    sub.add_argument("--expires-at", help="RFC 3339; default: never")
    sub.add_argument("--format", choices=("text", "json"), default="text")
    sub = key_commands.add_parser("list", help="List keys (never their secrets).")
    sub.set_defaults(run=cmd_keys_list)
    sub.add_argument("--format", choices=("table", "json", "csv"), default="table")
    sub = key_commands.add_parser("revoke", help="Revoke a key at once.")
    sub.set_defaults(run=cmd_keys_revoke)
    sub.add_argument("key_id")

    if extend is not None:
        extend(commands)
    return root


def main(argv: list[str] | None = None, *, prog: str = "experiments",
         extend: Callable[[Any], None] | None = None) -> int:
    """``extend(commands)`` may add commands (argparse sub-parsers) whose ``run`` returns the
    exit code: the service's `python -m entrypoints` adds serve, migrate, rebuild-aggregates."""
    args = parser(prog, extend).parse_args(argv)
    try:
        code = args.run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ApiError, TransportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
