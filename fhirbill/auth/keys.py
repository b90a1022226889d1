"""The server's signing key: generated into the instance folder on first start, published as JWKS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

KEY_FILE = "smart_signing_key.pem"


def load_or_create(instance_dir: Path, pem: str | None = None) -> RSAKey:
    """The RS256 signing key: given PEM, else the instance file, else a new key written there."""
    if pem:
        return _with_kid(RSAKey.import_key(pem))
    path = Path(instance_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = RSAKey.generate_key(2048, private=True)
        data = key.as_pem(private=True)
        try:
            # O_EXCL: when several workers start at once, the first writer wins and the rest read it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    return _with_kid(RSAKey.import_key(path.read_bytes()))


def _with_kid(key: RSAKey) -> RSAKey:
    if not key.is_private:
        raise ValueError("the signing key must be a private key")
    kid = key.thumbprint()
    return RSAKey.import_key(key.as_dict(private=True) | {"kid": kid, "alg": "RS256", "use": "sig"})


def jwks(key: RSAKey) -> dict[str, Any]:
    """The public JWK Set."""
    return {"keys": [key.as_dict(private=False)]}
