"""Settings: one frozen object read from FHIRBILL_* environment variables; nothing else reads os.environ."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise ValueError(f"{name} must be a finite number, not negative")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults that run the demo."""

    instance_dir: Path = Path("instance")
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8080/fhir"
    log_level: str = "INFO"
    max_body_bytes: int = 10 * 1024 * 1024
    max_bundle_entries: int = 10_000
    profiles_dir: Path = Path(__file__).resolve().parent.parent / "profiles"
    seeds_dir: Path = Path(__file__).resolve().parent.parent / "seeds"
    x12_sender_id: str = "FHIRBILL"
    x12_receiver_id: str = "CLEARINGHSE"
    x12_usage: str = "T"
    token_cache_seconds: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.database_url:
            db = (self.instance_dir / "fhirbill.db").resolve()
            object.__setattr__(self, "database_url", f"sqlite:///{db}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read FHIRBILL_* variables (the process environment by default)."""
        e = dict(os.environ if env is None else env)
        kwargs: dict[str, Any] = {
            "instance_dir": Path(e.get("FHIRBILL_INSTANCE_DIR") or "instance"),
            "database_url": e.get("FHIRBILL_DATABASE_URL", ""),
            "base_url": e.get("FHIRBILL_BASE_URL") or cls.base_url,
            "log_level": (e.get("FHIRBILL_LOG_LEVEL") or "INFO").upper(),
            "max_body_bytes": _int(e, "FHIRBILL_MAX_BODY_BYTES", cls.max_body_bytes),
            "max_bundle_entries": _int(e, "FHIRBILL_MAX_BUNDLE_ENTRIES", cls.max_bundle_entries),
            "x12_sender_id": e.get("FHIRBILL_X12_SENDER_ID") or cls.x12_sender_id,
            "x12_receiver_id": e.get("FHIRBILL_X12_RECEIVER_ID") or cls.x12_receiver_id,
            "x12_usage": e.get("FHIRBILL_X12_USAGE") or cls.x12_usage,
            "token_cache_seconds": _float(e, "FHIRBILL_TOKEN_CACHE_SECONDS", cls.token_cache_seconds),
        }
        extra: dict[str, Any] = {}
        if e.get("FHIRBILL_CORS_ORIGINS"):
            extra["cors_origins"] = tuple(
                o.strip().rstrip("/") for o in e["FHIRBILL_CORS_ORIGINS"].split(",") if o.strip()
            )
        if e.get("FHIRBILL_AUTH_SIGNING_KEY_FILE"):
            extra["auth_signing_key_pem"] = Path(e["FHIRBILL_AUTH_SIGNING_KEY_FILE"]).read_text()
        kwargs["extra"] = extra
        if e.get("FHIRBILL_PROFILES_DIR"):
            kwargs["profiles_dir"] = Path(e["FHIRBILL_PROFILES_DIR"])
        kwargs.update(overrides)
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests)."""
        return replace(self, **changes)
