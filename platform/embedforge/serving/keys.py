"""Bearer API keys: read once, kept only as SHA-256 digests, compared in constant time.

The digests, not the keys, travel to the ingress replicas, so keys never appear in
deployment arguments, Serve's config dumps or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_key_digests(env_var: str | None, key_file: Path | None) -> frozenset[str]:
    """Digests of the keys in ``env_var`` (comma separated) and ``key_file`` (one per line, ``#`` comments)."""
    keys: list[str] = []
    if env_var and os.environ.get(env_var):
        keys += [key.strip() for key in os.environ[env_var].split(",")]
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: API key file not found")
        keys += [line.strip() for line in path.read_text().splitlines() if not line.strip().startswith("#")]
    return frozenset(digest(key) for key in keys if key)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def is_authorized(authorization: str | None, digests: frozenset[str]) -> bool:
    """True when no keys are configured, or the header carries one of them."""
    if not digests:
        return True
    token = bearer_token(authorization)
    if token is None:
        return False
    candidate = digest(token)
    return any(hmac.compare_digest(candidate, known) for known in digests)
