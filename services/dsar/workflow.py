"""The dsar workflow: one object that the app wires, made of one module per driver.

`effects` carries out the decisions of `cases` (pure) and holds what the drivers share; `intake` has
the stream handlers, `operations` identity verification and operator actions (HTTP), `downloads` the
export links (HTTP), `timers` the timed passes.
"""

from __future__ import annotations

from services.dsar.downloads import Downloads
from services.dsar.effects import Answer, CaseEffects, UnknownCase, utcnow
from services.dsar.intake import StreamHandlers
from services.dsar.operations import Operations, VerifyResult
from services.dsar.timers import Timers

__all__ = ["Answer", "CaseEffects", "UnknownCase", "VerifyResult", "Workflow", "utcnow"]


class Workflow(StreamHandlers, Operations, Downloads, Timers):
    """Every driver over one shared state (see `effects.CaseEffects`)."""
