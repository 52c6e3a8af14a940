"""Lua scripts, kept as ``.lua`` files in each pattern's ``lua/`` folder and loaded once.

``load_script(__package__, "fixed_window", libs=("lib",))`` reads
``<pattern>/lua/fixed_window.lua`` and inserts the shared library files it
names (from the same folder) after its header comment: one copy of shared
Lua (the server's time, rate parsing, a queue sweep) for every script that
uses it, and the header (KEYS, ARGV, returns, the ``Resend:`` line) stays
first, where readers look for it. A library file only defines ``local``
functions, so the script it is inserted into runs as if they were its own.

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
The line is looked for anywhere in the source: a header that goes on after a
blank line ends up below the library inserted into it.

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
def load_script(package: str | None, name: str, *, libs: tuple[str, ...] = ()) -> Script:
    """The script ``<package>/lua/<name>.lua``, with ``lua/<lib>.lua`` for each of
    ``libs`` inserted, in order, after its header (its leading ``--`` lines).

    ``package`` is the caller's ``__package__`` (``"aiocache_patterns.ratelimit"``);
    the script is named ``<pattern>/<name>`` (``"ratelimit/fixed_window"``).
    """
    if not package:
        raise ValueError("load_script needs the calling module's __package__")
    folder = resources.files(package).joinpath("lua")
    source = folder.joinpath(f"{name}.lua").read_bytes()
    if libs:
        lines = source.splitlines(keepends=True)
        end = 0
        while end < len(lines) and lines[end].startswith(b"--"):
            end += 1
        parts = [b"".join(lines[:end])]
        parts += [folder.joinpath(f"{lib}.lua").read_bytes() for lib in libs]
        parts.append(b"".join(lines[end:]))
        source = b"\n".join(parts)
    return Script(f"{package.rpartition('.')[2]}/{name}", source)
