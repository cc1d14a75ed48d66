"""QStash duration strings: ``10s``, ``1d10h30m``, ``1500ms``; a bare integer means seconds."""

import re

_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_LEN = 64
USAGE = "use forms like 10s, 5m, 1d10h30m, 500ms"


def _invalid(text: str, why: str | None = None) -> ValueError:
    # Every refusal carries the usage hint: the caller sees one header and one message.
    reason = f"{why}; " if why else ""
    return ValueError(f"invalid duration {text!r}: {reason}{USAGE}")


def parse_duration_ms(text: str) -> int:
    """Milliseconds in ``text``; raises ValueError with a readable message when malformed."""
    raw = text.strip()
    if not raw:
        raise _invalid(text, "empty")
    if len(raw) > _MAX_LEN:
        raise _invalid(text[:_MAX_LEN] + "…", f"longer than {_MAX_LEN} characters")
    if raw.startswith("-"):
        raise _invalid(text, "a duration cannot be negative")
    if raw.isdigit():
        return int(raw) * 1000
    pos = 0
    total = 0
    seen: set[str] = set()
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        if match.group(2) in seen:
            raise _invalid(text, f"unit {match.group(2)!r} given twice")
        seen.add(match.group(2))
        total += int(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(raw):
        raise _invalid(text)
    return total
