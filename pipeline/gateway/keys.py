"""API keys of the gateway: Langfuse-format key pairs, kept on the compacted ``config`` topic as salted hashes.

A record is keyed ``api-key/<project id>/<public key>``; its value holds the project, a name, a random salt and
``sha256(salt ‖ secret)``, never the secret. A null value revokes the key. The secret is a random uuid4 (122 bits),
so one fast salted hash is enough: no slow KDF is needed against guessing, and a request pays microseconds.
Every gateway follows the topic, so a created or revoked key applies without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

import msgspec

from pipeline.transforms.validate import iso_utc

KIND = "api-key"


class ApiKey(msgspec.Struct, frozen=True):
    public_key: str
    project_id: str
    name: str
    salt: str  # hex
    secret_hash: str  # hex sha256 of salt bytes followed by the secret's UTF-8 bytes
    created_at: str  # ISO 8601, UTC


def config_key(project_id: str, public_key: str) -> str:
    return f"{KIND}/{project_id}/{public_key}"


def new_key_pair() -> tuple[str, str]:
    """A public and a secret key in Langfuse's format (``pk-lf-<uuid4>``, ``sk-lf-<uuid4>``)."""
    return f"pk-lf-{uuid.uuid4()}", f"sk-lf-{uuid.uuid4()}"


def hash_secret(secret: str, salt: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def make_key(project_id: str, public_key: str, secret_key: str, name: str) -> ApiKey:
    salt = secrets.token_hex(16)
    created = iso_utc(int(time.time() * 1000))
    return ApiKey(public_key, project_id, name, salt, hash_secret(secret_key, salt), created)


def check_key_text(value: str, what: str) -> str | None:
    """Why ``value`` cannot be a key (it goes into HTTP headers and a config key), or None."""
    if not 8 <= len(value) <= 200 or not value.isascii() or not value.isprintable() or any(c in value for c in "/: "):
        return f"{what} must be 8 to 200 printable ASCII characters without '/', ':' or spaces"
    return None


class KeyRing:
    """The keys a gateway accepts, by public key, fed from the config topic."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}

    def apply(self, key: str, value: dict[str, Any] | None) -> None:
        """One config record; records of other kinds are not the gateway's and are skipped."""
        kind, _, rest = key.partition("/")
        if kind != KIND:
            return
        project_id, _, public_key = rest.partition("/")
        if not project_id or not public_key:
            raise ValueError(f"api key record {key!r} is not api-key/<project>/<public key>")
        if value is None:
            if (current := self.keys.get(public_key)) is not None and current.project_id == project_id:
                del self.keys[public_key]
            return
        self.keys[public_key] = msgspec.convert(value, ApiKey)

    def authenticate(self, public_key: str, secret_key: str) -> ApiKey | None:
        """The key when the pair matches a live key, else None."""
        entry = self.keys.get(public_key)
        if entry is None:
            return None
        return entry if hmac.compare_digest(hash_secret(secret_key, entry.salt), entry.secret_hash) else None
