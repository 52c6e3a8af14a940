"""Who may write: bearer tokens, each standing for a user (and some users are admins).

Minimal on purpose, but with the habits that matter: tokens are compared by
their SHA-256 (a dictionary lookup of an unpredictable digest, so the time it
takes says nothing about how close a guess was), must be long enough not to
be guessed, are never logged, and a request without a valid one is a 401
with ``WWW-Authenticate: Bearer``. The write routes check the rate limit
first, so guessing tokens is rate limited too. Use a real identity provider
in a real service.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from fastapi import HTTPException

__all__ = ["MIN_TOKEN_LENGTH", "Identity", "Tokens", "tokens_from_env"]

#: Shorter tokens are refused at start-up (``secrets.token_urlsafe()`` makes 43).
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Identity:
    """The user a request's token stands for."""

    name: str
    admin: bool = False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Tokens:
    """``{user: token}``, checked at construction; :meth:`identify` maps a header to a user."""

    def __init__(self, tokens: Mapping[str, str], admins: Collection[str] = ()) -> None:
        self._users: dict[bytes, Identity] = {}
        for user, token in tokens.items():
            if not user or not user.isprintable() or len(user) > 100:
                raise ValueError(f"user names must be 1-100 printable characters: {user!r}")
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"the token of {user!r} is too short: at least {MIN_TOKEN_LENGTH} "
                    "characters (python -c 'import secrets; print(secrets.token_urlsafe())')"
                )
            if _digest(token) in self._users:
                raise ValueError(f"the token of {user!r} is also another user's")
            self._users[_digest(token)] = Identity(user, user in admins)
        unknown = set(admins) - set(tokens)
        if unknown:
            raise ValueError(f"admins without a token: {sorted(unknown)}")

    def __len__(self) -> int:
        """How many users may write."""
        return len(self._users)

    def identify(self, authorization: str | None) -> Identity:
        """The user of an ``Authorization`` header's bearer token, or a 401."""
        scheme, _, token = (authorization or "").partition(" ")
        identity = None
        if scheme.lower() == "bearer" and token.strip():
            identity = self._users.get(_digest(token.strip()))
        if identity is None:
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        return identity


def tokens_from_env() -> Tokens:
    """``$BLOG_TOKENS`` (``ann=<token>,bo=<token>``) and ``$BLOG_ADMINS`` (``ann,bo``)."""
    tokens: dict[str, str] = {}
    for entry in os.environ.get("BLOG_TOKENS", "").split(","):
        if entry.strip():
            user, sep, token = entry.strip().partition("=")
            if not sep:
                raise ValueError("BLOG_TOKENS must look like ann=<token>,bo=<token>")
            tokens[user.strip()] = token.strip()
    names = os.environ.get("BLOG_ADMINS", "").split(",")
    admins = {name.strip() for name in names if name.strip()}
    return Tokens(tokens, admins)
