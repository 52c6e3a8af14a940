"""Lua scripts, kept as ``lua/*.lua`` files and loaded once.

Scripts run with EVALSHA; the executor answers NOSCRIPT (a restarted server, a
new cluster node, SCRIPT FLUSH) by loading the source on every primary and
sending the command again, which is safe because a NOSCRIPT command never ran.
User input only ever travels in KEYS and ARGV, never in the source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

__all__ = ["Script", "load_script"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script: its name, its source and the SHA1 Redis knows it by."""

    name: str
    source: bytes = field(repr=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source).hexdigest())


@cache
def load_script(name: str) -> Script:
    """The script ``lua/<name>.lua`` of this package."""
    source = resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_bytes()
    return Script(name, source)
