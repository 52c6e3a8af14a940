"""The leaderboard's scripts and its key layout.

Every script is ``lua/<name>.lua`` with the shared Lua it uses inserted after
its header (``lua/lib.lua``; the writes also ``lua/lib_write.lua``). A board
is four keys with the board's hash tag (``Keys``; the layout and the
tie-break are described in ``lua/lib.lua``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from .._redis.scripts import Script, load_script
from ..keys import KeyBuilder

__all__ = ["BUILDING", "DAMAGED", "FLAG", "SCRIPTS", "Call", "Keys", "signal"]

#: What a script says, instead of its answer, when the board's member index
#: disagrees with the board (see ``leaderboard_lib``): nothing was written.
DAMAGED: Final = b"damaged"
#: What a read script says when a dense rank needs distinct scores not built
#: yet: it built one more bounded step; ask again.
BUILDING: Final = b"building"
#: Lua's view of a bool.
FLAG: Final[tuple[bytes, bytes]] = (b"0", b"1")


def _script(name: str, *, writes: bool) -> Script:
    """``lua/<name>.lua`` with the shared functions it uses inserted after its header.

    Every script gets ``lua/lib.lua``; those that write also get
    ``lua/lib_write.lua`` (the reads skip it: defining functions costs
    time on every call).
    """
    return load_script(__package__, name, libs=("lib", "lib_write") if writes else ("lib",))


#: Every leaderboard script, by name (``lua/<name>.lua``).
SCRIPTS: Final[dict[str, Script]] = {
    **{
        name: _script(name, writes=True)
        for name in ("submit", "increment", "remove", "view", "heal")
    },
    **{name: _script(name, writes=False) for name in ("rank", "range")},
}


def signal(reply: Any) -> bytes | None:
    """``DAMAGED`` or ``BUILDING`` if a script answered that, else None."""
    if type(reply) is list and len(reply) == 1 and reply[0] in (DAMAGED, BUILDING):
        found: bytes = reply[0]
        return found
    return None


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one board (and, for a rolling view, what it is built from)."""

    z: bytes  # encoded member -> score
    m: bytes  # member -> prefix
    ds: bytes  # distinct scores
    seq: bytes  # tie-break counter (a view's freshness marker)
    heal: bytes  # the member index while it is rebuilt
    expire_at: bytes = b"0"  # periodic boards: Unix seconds
    sources: tuple[bytes, ...] = ()  # a rolling view: the boards it sums up

    @classmethod
    def of(cls, z: bytes, expire_at: bytes = b"0", sources: tuple[bytes, ...] = ()) -> Keys:
        derived = KeyBuilder.derived
        seq = derived(z, "built" if sources else "seq")
        m = derived(z, "m")
        return cls(z, m, derived(z, "ds"), seq, derived(m, "heal"), expire_at, sources)

    @property
    def board(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.z, self.m, self.ds, self.seq)

    @property
    def reads(self) -> tuple[bytes, bytes, bytes]:
        return (self.z, self.m, self.ds)

    @property
    def lookups(self) -> tuple[bytes, bytes]:
        return (self.z, self.m)


#: One thing to send: a script with its keys and arguments, or (no script) a command.
Call: TypeAlias = tuple[Script | None, tuple[bytes, ...], tuple[Any, ...]]
