"""The server's long-lived parts, built once per app: settings, engine, registries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Engine

from fhirbill.fhir.profiles import ProfileRegistry
from fhirbill.fhir.searchparams import SearchParamRegistry
from fhirbill.rcm.claims import assign_control_number
from fhirbill.settings import Settings
from fhirbill.store.db import make_engine
from fhirbill.store.indexing import make_indexer
from fhirbill.store.resources import Indexer

# Per-type adjustments applied before a write is stored: (new data, previous data) -> data.
WriteHook = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]
WRITE_HOOKS: dict[str, WriteHook] = {"Claim": assign_control_number}


@cache
def _registries(profiles_dir: str) -> tuple[SearchParamRegistry, ProfileRegistry]:
    """Search parameters and profiles from profiles/ (loaded once per process: they are read-only)."""
    return SearchParamRegistry.load(profiles_dir), ProfileRegistry.load(profiles_dir)


@dataclass
class Server:
    """What every request needs, shared across requests."""

    settings: Settings
    engine: Engine
    params: SearchParamRegistry
    profiles: ProfileRegistry
    indexer: Indexer
    hooks: dict[str, WriteHook] = field(default_factory=lambda: dict(WRITE_HOOKS))

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None) -> Server:
        """Load the registries from profiles/ and open the database engine."""
        params, profiles = _registries(str(settings.profiles_dir))
        engine = engine or make_engine(settings.database_url)
        return cls(settings, engine, params, profiles, make_indexer(params, settings.base_url))

    @property
    def base(self) -> str:
        """The public FHIR base URL."""
        return self.settings.base_url

    def warm(self) -> None:
        """Compile now what the first writes of each type would compile (validation shapes and
        index plans, about half a second), so that serving starts at full speed."""
        # Imported here: loading every model class costs a second or two that CLI commands skip.
        from fhirbill.fhir.registry import RESOURCE_TYPES
        from fhirbill.fhir.validation import compile_shapes

        compile_shapes()
        for rt in RESOURCE_TYPES:
            self.indexer({"resourceType": rt})
