"""Exports too large for one message: split into parts, and put the parts back together (pure).

The contract (`privacy-acks`): a system whose export does not fit one message answers with several acks
that share the `command_id`, each with `part` (1..n), `parts` (n), `export_chunk` (a consecutive slice of
the UTF-8 JSON text of the whole export object) and `export_sha256` (hex SHA-256 of that whole text).
Parts may arrive in any order and more than once; a whole export may be up to 64 MiB per system.

`split` is what a service answering as a downstream system sends; `assemble` is what the receiver
decides from the parts it holds: wait for more, use the export, or refuse it with a reason a person
can act on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.fields import MAX_EXPORT_PARTS, MAX_EXPORT_TOTAL_BYTES, MAX_JSON_DEPTH

#: Exports whose text is at most this many bytes travel inline (`export`): with the envelope the
#: message stays well under the 256 KiB every topic keeps to.
INLINE_BYTES = 200 * 1024
#: Characters per part. In the ack's JSON a character takes at most 4 bytes (non-ASCII travels raw as
#: UTF-8; the escapes JSON text needs inside a string, `\\"` and `\\\\`, take 2), so a part is at most
#: 192 KiB plus its envelope.
CHUNK_CHARS = 48 * 1024


class ExportTooLarge(ValueError):
    """An export over the contract's 64 MiB per system."""


@dataclass(frozen=True)
class Part:
    part: int
    parts: int
    chunk: str
    sha256: str


@dataclass(frozen=True)
class Waiting:
    """Not all parts are here yet."""

    missing: tuple[int, ...]


@dataclass(frozen=True)
class Complete:
    export: dict[str, Any]


@dataclass(frozen=True)
class Unusable:
    """The parts cannot make an export; `reason` says why (it goes to the operator reviewing the case)."""

    reason: str


Assembly = Waiting | Complete | Unusable


def export_text(export: Mapping[str, Any]) -> str:
    """The JSON text of an export as this project sends it (compact, non-ASCII as is)."""
    return json.dumps(export, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def needs_parts(text: str) -> bool:
    return len(text.encode("utf-8")) > INLINE_BYTES


def split(text: str, chunk_chars: int = CHUNK_CHARS) -> list[Part]:
    """The parts of an export's JSON text, in order; raises ExportTooLarge over 64 MiB."""
    size = len(text.encode("utf-8"))
    if size > MAX_EXPORT_TOTAL_BYTES:
        raise ExportTooLarge(f"the export is {size} bytes; the limit is {MAX_EXPORT_TOTAL_BYTES} bytes per system")
    if not text:
        raise ValueError("an export's text is never empty")
    chunks = [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    if len(chunks) > MAX_EXPORT_PARTS:
        raise ExportTooLarge(f"{len(chunks)} parts; at most {MAX_EXPORT_PARTS}")
    sha = digest(text)
    return [Part(number, len(chunks), chunk, sha) for number, chunk in enumerate(chunks, start=1)]


def size_problem(parts_held: Iterable[Part]) -> str | None:
    """A reason to refuse the parts held so far without waiting for the rest, or None.

    Checked as parts arrive, so a system that keeps sending never makes the receiver hold more than
    64 MiB (plus one part) of one export."""
    held = {p.part: p for p in parts_held}
    total = sum(len(p.chunk.encode("utf-8")) for p in held.values())
    if total > MAX_EXPORT_TOTAL_BYTES:
        return f"the export is over {MAX_EXPORT_TOTAL_BYTES} bytes, the limit per system"
    counts = {p.parts for p in held.values()}
    if len(counts) > 1:
        return f"the parts disagree on how many there are ({', '.join(str(c) for c in sorted(counts))})"
    if any(p.part > p.parts for p in held.values()):
        return "a part is numbered beyond the number of parts"
    return None


def assemble(parts_held: Iterable[Part]) -> Assembly:
    """Decide from the parts of one export (one `export_sha256`) held so far.

    Repeated parts count once (the first one held). All there: the text is joined in part order, its
    SHA-256 must be the one the parts name, and it must be a JSON object within the contract's bounds."""
    held: dict[int, Part] = {}
    for p in parts_held:
        held.setdefault(p.part, p)
    if not held:
        return Waiting(())
    problem = size_problem(held.values())
    if problem is not None:
        return Unusable(problem)
    parts = next(iter(held.values())).parts
    missing = tuple(n for n in range(1, parts + 1) if n not in held)
    if missing:
        return Waiting(missing)
    text = "".join(held[n].chunk for n in range(1, parts + 1))
    expected = held[1].sha256.lower()
    if digest(text) != expected:
        return Unusable(f"the {parts} parts do not match their SHA-256 (digest mismatch): a part was altered or "
                        "belongs to another export")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Unusable("the joined parts are not JSON text")
    if not isinstance(value, dict):
        return Unusable("the joined parts are not a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        return Unusable(f"the export is nested deeper than {MAX_JSON_DEPTH} levels")
    return Complete(value)


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest
