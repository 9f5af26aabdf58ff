"""API key material: random keys shown once, stored as keyed hashes.

A key is `bk_` + 43 url-safe characters (256 bits), so a fast keyed hash (HMAC-SHA256 with a
server-side pepper) is enough: there is nothing to brute-force, and lookup stays one indexed read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import StrEnum

KEY_PREFIX = "bk_"
_KEY_RE = re.compile(r"^bk_[A-Za-z0-9_-]{43}$")


class Scope(StrEnum):
    READ = "billing.read"
    MANAGE = "billing.manage"
    OPERATOR = "billing.operator"


TENANT_SCOPES = frozenset({Scope.READ, Scope.MANAGE})


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def hash_key(key: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).digest()


def display_prefix(key: str) -> str:
    return key[:10]


def implied_scopes(scopes: frozenset[str]) -> frozenset[str]:
    """`billing.manage` includes `billing.read`."""
    if Scope.MANAGE in scopes:
        return scopes | {Scope.READ}
    return scopes
