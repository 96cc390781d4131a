"""The event contract: one pydantic v2 model per topic (see ../shared/DESIGN.md)."""
