"""`tasks keys …`: issue, list and revoke API keys in the database TASKS_DATABASE names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from adapters.config import Settings
from adapters.keys import ROLES, InvalidGrantError, KeyStore
from adapters.sql import open_store


@contextmanager
def _keys() -> Iterator[KeyStore]:
    store = open_store(Settings.from_env(), pool_size=1)
    try:
        keys = KeyStore(store)
        keys.create_table()
        yield keys
    finally:
        store.close()


@click.group()
def keys() -> None:
    """Manage API keys (stored as SHA-256 hashes; a secret is shown once)."""


@keys.command("create")
@click.option("--tenant", required=True, help="The organisation the key belongs to.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do (README: Security).")
@click.option("--agent-id", default=None, help="For --role agent: the agentId whose tasks it may read and drive.")
@click.option("--label", default=None, help="A note for humans, e.g. who holds the key.")
def create(tenant: str, role: str, agent_id: str | None, label: str | None) -> None:
    """Issue a new key and print it once."""
    with _keys() as store:
        try:
            key_id, secret = store.issue(tenant, role, agent_id, label)
        except InvalidGrantError as error:
            raise click.UsageError(str(error)) from None
    click.echo(f"{key_id} {secret}")
    click.echo("The secret is shown only now; it is stored as a hash and cannot be recovered.", err=True)


@keys.command("list")
@click.option("--tenant", default=None, help="Only the keys of this tenant.")
def list_(tenant: str | None) -> None:
    """List keys (never their secrets), oldest first."""
    with _keys() as store:
        records = store.list(tenant)
    click.echo("KEY_ID\tTENANT\tROLE\tAGENT_ID\tCREATED_AT\tREVOKED_AT\tLABEL")
    for k in records:
        click.echo("\t".join([k.key_id, k.tenant, k.role, k.agent_id or "-", k.created_at, k.revoked_at or "-",
                              k.label or "-"]))


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key: refused by every process from its next request on."""
    with _keys() as store:
        record = store.revoke(key_id)
    if record is None:
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"{record.key_id} revoked at {record.revoked_at}")
