"""Numbers from clouds, read tolerantly: what is not a finite number is as good as none."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator


def number_or_none(value: Any) -> float | None:
    """Read a finite number; anything else (text, inf, NaN, 1e400) is None."""
    if not isinstance(value, bool | int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # text, or an integer too big for a float
        return None
    return number if math.isfinite(number) else None


# A wire field holding a number: a null, a garbled or an infinite value reads as "not reported",
# so one odd field never throws away the rest of a car's data.
Number = Annotated[float | None, BeforeValidator(number_or_none)]
