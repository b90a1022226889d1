"""The `fhirbill` command: serve, db, seed, import."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from fhirbill.settings import Settings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _server() -> Any:
    from fhirbill.api.server import Server

    return Server.build(_settings())


@click.group()
def main() -> None:
    """fhirbill: a FHIR R4 medical billing server."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the server under gunicorn (not the Flask development server)."""
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "wsgi:app",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--access-logfile",
        "/dev/null",  # our own request log never prints query values
        "--error-logfile",
        "-",
        "--chdir",
        str(Path(__file__).resolve().parent.parent),
    ]
    os.execv(sys.executable, args)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from fhirbill.store.db import make_engine
    from fhirbill.store.migrate import upgrade

    settings = _settings()
    upgrade(make_engine(settings.database_url))
    click.echo(json.dumps({"database": _safe_url(settings.database_url), "migrations": "head"}))


@db.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from fhirbill.store.db import make_engine
    from fhirbill.store.migrate import check

    check(make_engine(_settings().database_url))
    click.echo(json.dumps({"drift": False}))


@db.command("reindex")
@click.option("--type", "res_type", default=None, help="Only this resource type.")
def db_reindex(res_type: str | None) -> None:
    """Rebuild search indexes after a SearchParameter definition changed."""
    from fhirbill.fhir.registry import is_resource_type
    from fhirbill.store.indexing import reindex

    if res_type and not is_resource_type(res_type):
        raise click.ClickException(f"'{res_type}' is not a resource type this server stores.")
    srv = _server()
    n = reindex(srv.engine, srv.indexer, res_type)
    click.echo(json.dumps({"reindexed": n, "type": res_type}))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def seed(as_json: bool) -> None:
    """Load the demo practice from seeds/ (idempotent)."""
    from fhirbill.api.imports import import_paths

    srv = _server()
    files = sorted(srv.settings.seeds_dir.glob("*.json"))
    if not files:
        raise click.ClickException(f"No seed bundles in {srv.settings.seeds_dir}.")
    summary = import_paths(srv, files, progress=not as_json)
    _print_summary(summary, as_json)
    if summary["failed"]:
        sys.exit(1)


@main.command("import")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def import_(paths: tuple[Path, ...], as_json: bool) -> None:
    """Load JSON resources, Bundles and NDJSON files."""
    from fhirbill.api.imports import import_paths

    summary = import_paths(_server(), list(paths), progress=not as_json)
    _print_summary(summary, as_json)
    if summary["failed"]:
        sys.exit(1)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"created {summary['created']}, updated {summary['updated']}, "
        f"unchanged {summary['unchanged']}, failed {summary['failed']}"
    )
    for err in summary["errors"][:50]:
        click.echo(f"  {err['source']}: {err['status']} {err['diagnostics']}", err=True)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.group()
def x12() -> None:
    """X12 5010 files for the clearinghouse."""


@x12.command("837")
@click.option("--claim", "claims", multiple=True, help="A Claim id (repeatable).")
@click.option(
    "--payer", default=None, help="Organization/ID: every active, not yet billed claim of that payer."
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the 837 here (default: standard output).",
)
def x12_837(claims: tuple[str, ...], payer: str | None, out: Path | None) -> None:
    """Scrub claims and write one 837 interchange; rejected claims are listed as JSON on stderr."""
    from tqdm import tqdm

    from fhirbill.api.x12ops import run_837

    if not claims and not payer:
        raise click.UsageError("Name at least one --claim or a --payer.")
    if payer and not payer.startswith("Organization/"):
        raise click.UsageError("--payer takes Organization/ID.")
    srv = _server()
    with tqdm(total=None, unit="claim", disable=out is None, leave=False) as bar:
        run = run_837(srv, [c.removeprefix("Claim/") for c in claims], payer, progress=bar.update)
    if run.text:
        if out:
            out.write_text(run.text)
        else:
            click.echo(run.text, nl=False)
    summary = {
        "isa13": run.isa13,
        "sent": run.sent,
        "rejected": [
            {"claim": f"Claim/{r.claim_id}", "issues": [i.to_json() for i in r.issues]} for r in run.rejected
        ],
    }
    click.echo(json.dumps(summary), err=True)
    if not run.text:
        sys.exit(1)
