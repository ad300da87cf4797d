"""What ``twinflow mapping check --connect`` found on one device: problems and notes per parameter.

Each protocol's check fills one (:func:`connectors.opcua.check.check_nodes`,
:func:`connectors.modbus.check.check_registers`); the CLI prints them the same way.

>>> found = DeviceCheck(checked=2)
>>> found.problem("pump-1", "speed", "unit 1 holding 7", "the device refused the read")
>>> found.ok, found.problems[0][3]
(1, 'the device refused the read')
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DeviceCheck:
    """Problems and notes as (twin, parameter, where on the device, why), in the file's order."""

    checked: int = 0
    setpoints: int = 0
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[tuple[str, str, str, str]] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)  # about the device as a whole
    # Values read that nothing in the mapping judges (a Modbus register without min/max), twin → name → value:
    # for a person to look at (a wrong word order reads as 1e-41 or -1.9e25).
    unjudged: dict[str, dict[str, object]] = field(default_factory=dict)

    def problem(self, twin: str, param: str, where: str, why: str) -> None:
        self.problems.append((twin, param, where, why))

    def note(self, twin: str, param: str, where: str, why: str) -> None:
        self.notes.append((twin, param, where, why))

    @property
    def ok(self) -> int:
        """Parameters checked without a problem."""
        return self.checked - len({(p[0], p[1]) for p in self.problems})
