"""QStash duration strings: ``10s``, ``1d10h30m``, ``1500ms``; a bare integer means seconds."""

import re

_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_LEN = 64


def parse_duration_ms(text: str) -> int:
    """Milliseconds in ``text``; raises ValueError with a readable message when malformed."""
    raw = text.strip()
    if not raw or len(raw) > _MAX_LEN:
        raise ValueError(f"invalid duration {text!r}")
    if raw.isdigit():
        return int(raw) * 1000
    pos = 0
    total = 0
    seen: set[str] = set()
    for match in _PART.finditer(raw):
        if match.start() != pos or match.group(2) in seen:
            raise ValueError(f"invalid duration {text!r}")
        seen.add(match.group(2))
        total += int(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(raw):
        raise ValueError(f"invalid duration {text!r}: use forms like 10s, 5m, 1d10h30m, 500ms")
    return total
