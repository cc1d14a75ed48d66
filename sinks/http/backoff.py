"""QStash's default wait before a retry (qstash-api.md §5.4).

The wait before retry number n (n = 1 for the first retry) is
``min(BACKOFF_CAP_S, e^(BACKOFF_EXPONENT * n))`` seconds: about 12 s, 2 m 28 s,
30 m 8 s, 6 h 7 m, then a day from the fifth retry on.
"""

import math
from typing import Final

from kafstash.schemas.defaults import BACKOFF_CAP_S, BACKOFF_EXPONENT

__all__ = ["default_backoff_ms"]

# Beyond this retry number e^(2.5 n) exceeds the cap (and soon the float range).
_LAST_UNCAPPED_RETRY: Final = math.floor(math.log(BACKOFF_CAP_S) / BACKOFF_EXPONENT)


def default_backoff_ms(retried: int) -> int:
    """Milliseconds to wait after a failed attempt when ``retried`` retries already happened.

    ``retried`` is the attempt's ``Upstash-Retried`` value (0 for the first attempt), so
    the retry being scheduled is number ``retried + 1``.
    """
    if retried < 0:
        raise ValueError(f"retried must be >= 0, got {retried}")
    n = retried + 1
    if n > _LAST_UNCAPPED_RETRY:
        return BACKOFF_CAP_S * 1000
    return min(BACKOFF_CAP_S * 1000, round(math.exp(BACKOFF_EXPONENT * n) * 1000))
