"""Who sends a request: Langfuse's two authorization schemes, resolved against the key ring.

``Basic base64(pk:sk)`` gives the key's project full ingestion access. ``Bearer <pk>`` (browser SDKs, no
secret) gives the ``scores`` scope: only score events pass. Failures carry Langfuse's reasons, which clients
show to users.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from pipeline.gateway.keys import KeyRing

ALL = "all"
SCORES = "scores"


@dataclass(frozen=True)
class Caller:
    project_id: str
    public_key: str
    scope: str  # ALL (Basic: public and secret key) or SCORES (Bearer: public key only)


class Unauthorized(Exception):
    """401 with Langfuse's reason."""


def authenticate(header: str | None, keys: KeyRing) -> Caller:
    if not header:
        raise Unauthorized("No authorization header")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Invalid authorization header") from None
        public_key, separator, secret_key = decoded.partition(":")
        secret_key = secret_key.split(":", 1)[0]  # Langfuse uses only the first two parts
        if not separator:
            raise Unauthorized("Invalid authorization header")
        key = keys.authenticate(public_key, secret_key)
        if key is None:
            raise Unauthorized("Invalid credentials")
        return Caller(key.project_id, key.public_key, ALL)
    if scheme.lower() == "bearer":
        key = keys.keys.get(credentials)
        if key is None:
            raise Unauthorized("Invalid credentials")
        return Caller(key.project_id, key.public_key, SCORES)
    raise Unauthorized("Invalid authorization header")


def unauthorized_body(reason: str) -> dict[str, str]:
    return {"error": "UnauthorizedError", "message": f"{reason}. Confirm that you've configured the correct host."}
