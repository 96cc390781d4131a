"""Exports answered in parts: split and assembly on their own (pure), and the contract's rules for the
four fields of a part, in the model and in the generated JSON Schema alike."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from privacy_runtime import export_chunks
from privacy_runtime.export_chunks import Complete, Part, Unusable, Waiting, assemble, split
from schemas import topics
from schemas.envelope import dump_event, new_event
from schemas.events import PrivacyAck
from schemas.fields import MAX_EXPORT_TOTAL_BYTES

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema" / f"{topics.PRIVACY_ACKS}.json"


def _export(entries: int) -> dict[str, Any]:
    return {"system": "consent", "consent_history": [
        {"n": n, "purpose": "marketing_email", "granted": n % 2 == 0, "note": "åäö \"quoted\" \\ 😀"}
        for n in range(entries)]}


def _parts(export: dict[str, Any], chunk_chars: int = 1000) -> list[Part]:
    return split(export_chunks.export_text(export), chunk_chars)


def test_parts_out_of_order_and_repeated_make_the_whole_export() -> None:
    export = _export(200)
    parts = _parts(export)
    assert len(parts) > 5
    shuffled = parts + parts[:3]
    random.Random(7).shuffle(shuffled)
    assert assemble(shuffled) == Complete(export)


def test_one_part_missing_waits_for_it() -> None:
    parts = _parts(_export(200))
    held = [p for p in parts if p.part != 3]
    assert assemble(held) == Waiting((3,))
    assert assemble([*held, parts[2]]) == Complete(_export(200))


def test_a_corrupted_part_is_a_digest_mismatch_with_a_reason() -> None:
    parts = _parts(_export(200))
    bad = Part(2, parts[1].parts, parts[1].chunk.replace("marketing", "marketinG", 1), parts[1].sha256)
    outcome = assemble([bad if p.part == 2 else p for p in parts])
    assert isinstance(outcome, Unusable) and "digest mismatch" in outcome.reason


def test_a_repeated_part_counts_as_first_held() -> None:
    """A part sent again (same number) never replaces the one held: the digest decides, once."""
    parts = _parts(_export(50))
    assert assemble([*parts, Part(1, parts[0].parts, "{}", parts[0].sha256)]) == Complete(_export(50))


def test_over_64_mib_is_refused_with_a_reason() -> None:
    text = json.dumps({"blob": "x" * (MAX_EXPORT_TOTAL_BYTES + 10)})
    with pytest.raises(export_chunks.ExportTooLarge, match="limit"):
        split(text)
    # A sender that ignores the limit: the receiver refuses as soon as what it holds is too much.
    chunk = "x" * (1024 * 1024)
    sha = "0" * 64
    held = [Part(n, 100, chunk, sha) for n in range(1, 66)]
    outcome = assemble(held)
    assert isinstance(outcome, Unusable) and "limit per system" in outcome.reason
    assert export_chunks.size_problem(held[:10]) is None


def test_parts_that_disagree_or_are_not_an_object_are_refused() -> None:
    parts = _parts(_export(50))
    other = Part(2, parts[1].parts + 1, parts[1].chunk, parts[1].sha256)
    outcome = assemble([other if p.part == 2 else p for p in parts])
    assert isinstance(outcome, Unusable) and "disagree" in outcome.reason
    text = "[1, 2, 3]"
    outcome = assemble(split(text, 2))
    assert isinstance(outcome, Unusable) and "not a JSON object" in outcome.reason


def test_every_part_of_a_large_export_fits_one_message() -> None:
    """Escapes and non-ASCII take more bytes than characters: the worst case still stays under 256 KiB."""
    nasty = {"text": ('"\\' * 20000) + ("😀" * 60000) + ("å" * 60000)}
    text = export_chunks.export_text(nasty)
    assert export_chunks.needs_parts(text)
    parts = split(text)
    for part in parts:
        ack = PrivacyAck(command_id=uuid.uuid4(), system="consent", status="done", part=part.part,
                         parts=part.parts, export_chunk=part.chunk, export_sha256=part.sha256)
        encoded = dump_event(new_event(topics.PRIVACY_ACKS, ack, subject="s-1", source="urn:test"))
        assert len(encoded) < 256 * 1024
    assert assemble(reversed(parts)) == Complete(nasty)


def _data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"command_id": str(uuid.uuid4()), "system": "consent", "status": "done",
                            "part": 1, "parts": 2, "export_chunk": "{\"a\":", "export_sha256": "ab" * 32}
    data.update(changes)
    return data


@pytest.mark.parametrize("changes", [
    {"parts": None}, {"export_chunk": None}, {"export_sha256": None}, {"part": None},
    {"part": 3}, {"part": 0}, {"status": "failed"}, {"export": {"a": 1}}, {"export_sha256": "xyz"},
    {"export_chunk": ""}, {"part": "1"},
])
def test_a_part_needs_all_four_fields_consistent(changes: dict[str, Any]) -> None:
    data = _data(**changes)
    with pytest.raises(ValueError):
        PrivacyAck.model_validate_json(json.dumps(data))
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    event = json.loads(dump_event(new_event(topics.PRIVACY_ACKS, PrivacyAck.model_validate(_data()),
                                            subject="s-1", source="urn:test")))
    assert validator.is_valid(event)
    event["data"].update(changes)
    if changes.get("part") != 3:  # part <= parts is the model's rule only (JSON Schema cannot compare)
        assert not validator.is_valid(event), changes
