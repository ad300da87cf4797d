"""A setpoint must fit the OPC-UA node's data type: fractions and out-of-range numbers are refused, not rounded."""

from __future__ import annotations

import pytest
from asyncua import ua

from connectors.opcua.values import write_value

T = ua.VariantType


@pytest.mark.parametrize(
    ("vtype", "value", "expected"),
    [
        (T.Int16, 32767.0, 32767),
        (T.Int16, -32768.0, -32768),
        (T.UInt64, float(2**63), 2**63),
        (T.Byte, 255.0, 255),
        (T.Double, 3.5, 3.5),
        (T.Float, 1e12, 1e12),
        (T.Boolean, True, True),
        (T.Boolean, 0.0, False),
        (T.Int32, True, 1),
    ],
)
def test_values_that_fit_are_cast_to_the_type(vtype: ua.VariantType, value: float | bool, expected) -> None:
    got = write_value(vtype, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("vtype", "value", "reason"),
    [
        (T.Int16, 3.5, "3.5 is not a whole number"),
        (T.Int16, 1e12, "outside Int16 (-32768 … 32767)"),
        (T.Int16, 32768.0, "outside Int16"),
        (T.UInt16, -1.0, "outside UInt16 (0 … 65535)"),
        (T.SByte, 128.0, "outside SByte"),
        (T.UInt32, 0.5, "not a whole number"),
        (T.Float, 1e39, "outside Float"),
        (T.Boolean, 2.0, "not a boolean"),
    ],
)
def test_values_that_do_not_fit_are_refused_with_the_reason(vtype: ua.VariantType, value: float, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        write_value(vtype, value)
