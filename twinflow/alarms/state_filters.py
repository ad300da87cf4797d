"""The ``state`` filter of an alert list, shared by ``twinflow alerts list --state`` and
``GET /api/v1/alerts?state=``: a lifecycle filter, or an ISA-18.2 state among the alerts that are
not resolved (``normal``, ISA-18.2's name for a resolved alert, selects the resolved ones).

>>> selection("acknowledged"), selection("shelved"), selection("normal")
((['acknowledged'], None), (['open', 'acknowledged'], ['shelved']), (['resolved'], None))
"""

from __future__ import annotations

LIFECYCLE = {
    "active": ["open", "acknowledged"],
    "open": ["open"],
    "acknowledged": ["acknowledged"],
    "resolved": ["resolved"],
    "all": ["open", "acknowledged", "resolved"],
    "normal": ["resolved"],  # ISA-18.2: returned to normal
}
ISA_FILTERS = ("unack_active", "ack_active", "unack_cleared", "shelved", "suppressed", "out_of_service")
NAMES = (*LIFECYCLE, *ISA_FILTERS)


def selection(name: str) -> tuple[list[str], list[str] | None]:
    """The lifecycle states and the ISA-18.2 states (None: any) the filter ``name`` (one of :data:`NAMES`) selects."""
    if name in ISA_FILTERS:
        return LIFECYCLE["active"], [name]
    return LIFECYCLE[name], None
