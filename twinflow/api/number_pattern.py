r"""Regular expressions of decimal numbers within bounds, for patterns of the OpenAPI document that a
client can check (OpenAPI 3.0 has no bounds on a number written inside a text, e.g. the ``10`` of ``10s``).

A number is written ``digits[.digits]``: leading zeros allowed, at most ``places`` digits after the point.

>>> decimal_range(Decimal("0.5"), Decimal(2), places=1)
'(?:0*0\\.(?:[6-9]|5)|0*1(?:\\.[0-9]{1,1})?|0*2(?:\\.0{1,1})?)'
>>> import re
>>> [bool(re.fullmatch(decimal_range(Decimal("0.01"), Decimal(8)), t)) for t in ("0.01", "0.009", "8", "8.01")]
[True, False, True, False]
"""

from __future__ import annotations

import math
from decimal import Decimal

DIGITS = "[0-9]"


def _any(n: int) -> str:
    return "" if n == 0 else DIGITS if n == 1 else f"{DIGITS}{{{n}}}"


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else f"(?:{'|'.join(options)})"


def _digit_class(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def _same_length(a: str, b: str) -> str:
    """The digit strings of ``a``'s length from ``a`` to ``b`` (``a <= b``, same length)."""
    if not a:
        return ""
    if a[0] == b[0]:
        return a[0] + _same_length(a[1:], b[1:])
    n = len(a) - 1
    low, high, options = int(a[0]), int(b[0]), []
    if a[1:] != "0" * n:
        options.append(a[0] + _same_length(a[1:], "9" * n))
        low += 1
    tail = []
    if b[1:] != "9" * n:
        tail.append(b[0] + _same_length("0" * n, b[1:]))
        high -= 1
    if low <= high:
        options.append(_digit_class(low, high) + _any(n))
    return _either(options + tail)


def integer_range(lo: int, hi: int) -> str:
    """Whole numbers from ``lo`` to ``hi`` (``0 <= lo <= hi``), written with any leading zeros."""
    options = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        a, b = max(lo, 10 ** (n - 1) if n > 1 else 0), min(hi, 10**n - 1)
        if a <= b:
            options.append(_same_length(str(a), str(b)))
    return "0*" + _either(options)


def _fraction_at_least(a: str, places: int) -> str:
    """``.digits`` (or none) whose value, padded to ``places`` digits, is at least ``a``."""
    significant = a.rstrip("0")
    if not significant:
        return rf"(?:\.{DIGITS}{{1,{places}}})?"
    options = [  # greater at the first digit that differs, or a's own digits followed by any
        a[:i] + _digit_class(int(a[i]) + 1, 9) + (f"{DIGITS}{{0,{places - i - 1}}}" if i < places - 1 else "")
        for i in range(len(significant))
        if a[i] != "9"
    ]
    rest = places - len(significant)
    options.append(significant + (f"{DIGITS}{{0,{rest}}}" if rest else ""))
    return rf"\.{_either(options)}"


def _fraction_at_most(b: str, places: int) -> str:
    """``.digits`` (or none) whose value, padded to ``places`` digits, is at most ``b``."""
    if not b.strip("0"):
        return rf"(?:\.0{{1,{places}}})?"
    options = [  # smaller at the first digit that differs, or b's own first digits
        b[:i] + _digit_class(0, int(b[i]) - 1) + (f"{DIGITS}{{0,{places - i - 1}}}" if i < places - 1 else "")
        for i in range(places)
        if b[i] != "0"
    ]
    prefixes = b[-1]
    for digit in reversed(b[:-1]):  # b's own first digits: 1, 12, 123, ...
        prefixes = f"{digit}(?:{prefixes})?"
    return rf"(?:\.{_either([*options, prefixes])})?"


def decimal_range(low: Decimal, high: Decimal, places: int = 9) -> str:
    """The numbers from ``low`` to ``high`` (``0 <= low``, whole parts different) with at most ``places``
    digits after the point; the bounds are rounded inwards to ``places`` digits."""
    scale = 10**places
    lo, hi = math.ceil(low * scale), math.floor(high * scale)
    (lo_int, lo_frac), (hi_int, hi_frac) = divmod(lo, scale), divmod(hi, scale)
    if lo_int >= hi_int:
        raise ValueError(f"{low} and {high}: the whole parts must differ")
    options = [f"0*{lo_int}{_fraction_at_least(str(lo_frac).zfill(places), places)}"]
    if lo_int + 1 <= hi_int - 1:
        options.append(f"{integer_range(lo_int + 1, hi_int - 1)}(?:\\.{DIGITS}{{1,{places}}})?")
    options.append(f"0*{hi_int}{_fraction_at_most(str(hi_frac).zfill(places), places)}")
    return _either(options)
