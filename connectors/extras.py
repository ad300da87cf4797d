"""Optional dependencies of the protocol connectors, installed as extras of the ``twinflow`` package.

``pip install 'twinflow[opcua]'`` (asyncua), ``'twinflow[modbus]'`` (pymodbus) and
``'twinflow[sparkplug]'`` (protobuf); ``make setup`` installs all of them. A connector package
checks its extra when imported, so a missing one is an error naming the install command, not a
``ModuleNotFoundError`` from deep inside; the CLI prints it without a traceback.

>>> str(MissingExtra("opcua", "asyncua"))
"the OPC-UA connector needs asyncua, which is not installed: pip install 'twinflow[opcua]'"
>>> explain(ModuleNotFoundError("No module named 'pymodbus'", name="pymodbus")).extra
'modbus'
>>> explain(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
True
"""

from __future__ import annotations

import importlib

# extra -> (what needs it, the modules it provides); pyproject.toml [project.optional-dependencies].
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "opcua": ("the OPC-UA connector", ("asyncua",)),
    "modbus": ("the Modbus TCP connector", ("pymodbus",)),
    "sparkplug": ("the Sparkplug B codec", ("google.protobuf",)),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, extra: str, module: str) -> None:
        what = EXTRAS[extra][0]
        super().__init__(f"{what} needs {module}, which is not installed: pip install 'twinflow[{extra}]'", name=module)
        self.extra = extra


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)  # the connector imports it next anyway
    except ModuleNotFoundError:
        return False
    return True


def require(extra: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` can be imported."""
    for module in EXTRAS[extra][1]:
        if not _installed(module):
            raise MissingExtra(extra, module)


def explain(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The extra that provides the module ``exc`` did not find, if any."""
    name = exc.name or ""
    for extra, (_what, modules) in EXTRAS.items():
        for module in modules:
            if name == module or module.startswith(name + ".") or name.startswith(module + "."):
                return MissingExtra(extra, module)
    return None
