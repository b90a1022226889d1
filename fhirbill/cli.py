"""The `fhirbill` command: serve, db, seed, import."""

from __future__ import annotations

import gc
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


DEMO_AUTH = "smart/demo.json"


def _server() -> Any:
    """The Server for this command; its connection pool is closed when the command ends."""
    from fhirbill.api.server import Server

    srv = Server.build(_settings())
    click.get_current_context().call_on_close(srv.engine.dispose)
    gc.freeze()  # registries and models outlive the command: keep them out of full collections
    return srv


@click.group()
def main() -> None:
    """fhirbill: a FHIR R4 medical billing server."""


def gunicorn_command(app: str, host: str, port: int, workers: int, threads: int) -> list[str]:
    """The gunicorn command line that serves a WSGI app (`fhirbill serve`, and the bench's others)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        app,
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the server under gunicorn (not the Flask development server)."""
    args = gunicorn_command("wsgi:app", host, port, workers, threads)
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
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(json.dumps({"database": _safe_url(settings.database_url), "migrations": "head"}))


@db.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from fhirbill.store.db import make_engine
    from fhirbill.store.migrate import check

    engine = make_engine(_settings().database_url)
    try:
        check(engine)
    finally:
        engine.dispose()
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
    from fhirbill.auth.demo import load_demo
    from fhirbill.store.db import write_tx

    srv = _server()
    files = sorted(srv.settings.seeds_dir.glob("*.json"))
    if not files:
        raise click.ClickException(f"No seed bundles in {srv.settings.seeds_dir}.")
    summary = import_paths(srv, files, progress=not as_json)
    demo = srv.settings.seeds_dir / DEMO_AUTH
    if demo.exists():
        try:
            with write_tx(srv.engine) as conn:
                summary["smart"] = load_demo(conn, demo, srv.settings.instance_dir)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    _print_summary(summary, as_json)
    if not as_json:
        _token_help(srv.settings)
    if summary["failed"]:
        sys.exit(1)


def _token_help(settings: Settings) -> None:
    """Tell a newcomer how to call the seeded demo with a token."""
    from fhirbill.auth.demo import CREDENTIALS_FILE
    from fhirbill.auth.views import urls

    creds = settings.instance_dir / CREDENTIALS_FILE
    if not creds.exists():
        return
    token_url = urls(settings.base_url)["token"]
    click.echo(
        "\nGet a token for the demo billing service (secret in "
        f"{creds}):\n"
        f"  SECRET=$(python3 -c \"import json;print(json.load(open('{creds}'))['demo-billing-service']['client_secret'])\")\n"
        f"  TOKEN=$(curl -s -u demo-billing-service:$SECRET -d grant_type=client_credentials "
        f"-d 'scope=system/*.rs' {token_url} | python3 -c \"import sys,json;print(json.load(sys.stdin)['access_token'])\")\n"
        f'  curl -H "Authorization: Bearer $TOKEN" "{settings.base_url}/Claim?patient=john-carter"\n'
        "Patient app sign-in (authorize page): users john / demo-password-john, linda / demo-password-linda."
    )


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


def _admin(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an auth admin function in a write transaction; bad input becomes a clear CLI error."""
    from fhirbill.store.db import write_tx

    srv = _server()
    try:
        with write_tx(srv.engine) as conn:
            return fn(conn, *args, **kwargs)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def clients() -> None:
    """OAuth client registrations (SMART apps and backend services)."""


@clients.command("add")
@click.option("--name", required=True)
@click.option("--grant-type", required=True, type=click.Choice(["authorization_code", "client_credentials"]))
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--origin", "origins", multiple=True, help="A browser origin CORS allows for this client.")
@click.option(
    "--scope", default=None, help='One space-separated string, e.g. "patient/*.rs openid fhirUser".'
)
@click.option("--public", is_flag=True, help="A public client (PKCE, no secret).")
@click.option(
    "--secret", is_flag=True, help="A confidential client with a generated secret (client_secret_basic)."
)
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--jwks-uri", default=None)
def clients_add(
    name: str,
    grant_type: str,
    redirect_uris: tuple[str, ...],
    origins: tuple[str, ...],
    scope: str | None,
    public: bool,
    secret: bool,
    jwks_file: Path | None,
    jwks_uri: str | None,
) -> None:
    """Register a client; prints {"client_id": ..., "client_secret": ...}."""
    from fhirbill.auth import admin

    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text())
        except json.JSONDecodeError:
            raise click.ClickException(f"{jwks_file} is not valid JSON.") from None
    out = _admin(
        admin.add_client,
        name=name,
        grant_type=grant_type,
        redirect_uris=redirect_uris,
        origins=origins,
        scope=scope,
        public=public,
        secret=secret,
        jwks=jwks,
        jwks_uri=jwks_uri,
    )
    click.echo(json.dumps(out))


@clients.command("list")
def clients_list() -> None:
    """List registered clients (never their secrets)."""
    from fhirbill.auth import admin

    click.echo(json.dumps(_admin(admin.list_clients)))


@clients.command("revoke")
@click.argument("client_id")
def clients_revoke(client_id: str) -> None:
    """Revoke a client and every token issued to it."""
    from fhirbill.auth import admin

    if not _admin(admin.revoke_client, client_id):
        raise click.ClickException(f"No client {client_id}.")
    click.echo(json.dumps({"client_id": client_id, "revoked": True}))


@main.group()
def users() -> None:
    """People who sign in on the authorize page."""


@users.command("add")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
@click.option("--patient", default=None, help="Patient/ID this user is.")
@click.option("--fhir-user", default=None, help="Practitioner/ID (or other fhirUser) this user is.")
def users_add(username: str, password_stdin: bool, patient: str | None, fhir_user: str | None) -> None:
    """Create a user linked to a Patient or a Practitioner."""
    from fhirbill.auth import admin

    password = sys.stdin.readline().rstrip("\n")
    out = _admin(admin.add_user, username, password, patient=patient, fhir_user=fhir_user)
    click.echo(json.dumps(out))


@main.command()
@click.option("--patient", required=True, help="The Patient id the EHR launch is about.")
def launch(patient: str) -> None:
    """Create an EHR launch context; prints {"launch": "..."}."""
    from fhirbill.auth import admin

    click.echo(json.dumps(_admin(admin.new_launch, patient)))
