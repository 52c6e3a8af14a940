"""Lua scripts, kept as ``lua/*.lua`` files and loaded once.

Scripts run with EVALSHA; the executor answers NOSCRIPT (a restarted server, a
new cluster node, SCRIPT FLUSH) by loading the source on every primary and
sending the command again, which is safe because a NOSCRIPT command never ran.
User input only ever travels in KEYS and ARGV, never in the source.

A script that may be sent again after its reply was lost (running it twice
has the same effect and the same reply as running it once) says so on a line
of its own::

    -- Resend: safe (<one-line reason>)

Without that line the executor never resends it once it may have reached
Redis: the call raises ``RedisUnavailable`` instead (applied at most once).
The line is looked for anywhere in the source, because scripts built from
several files (a shared library prepended) carry their header after the
library.

The SHA-1 is the name EVALSHA knows a script by, not a security measure
(``usedforsecurity=False``: FIPS-mode Pythons allow it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

__all__ = ["Script", "declares_resend_safe", "load_script"]

#: ``-- Resend: safe (reason)``, alone on its line; the reason is required.
_RESEND_SAFE = re.compile(rb"^--[ \t]*Resend:[ \t]*safe[ \t]*\([ \t]*\S[^\r\n]*\)[ \t]*\r?$", re.M)


def declares_resend_safe(source: bytes) -> bool:
    """Whether ``source`` has the ``-- Resend: safe (<reason>)`` line."""
    return _RESEND_SAFE.search(source) is not None


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script: its name, its source, the SHA-1 Redis knows it by, and whether
    it may be resent after a lost reply (see the module docs)."""

    name: str
    source: bytes = field(repr=False)
    sha: str = field(init=False)
    resend_safe: bool = field(init=False)

    def __post_init__(self) -> None:
        sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", sha)
        object.__setattr__(self, "resend_safe", declares_resend_safe(self.source))


@cache
def load_script(name: str) -> Script:
    """The script ``lua/<name>.lua`` of this package."""
    source = resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_bytes()
    return Script(name, source)
