"""`pii`: mask personal data in every text field, and count what was masked by kind.

| kind | matched | mask |
|---|---|---|
| email | name@domain.tld | [EMAIL] |
| credit_card | 13-19 digits, spaces or dashes allowed, passing the Luhn check | [CREDIT_CARD] |
| my_number | Japanese Individual Number: 12 digits (4-4-4 allowed) with a valid check digit | [MY_NUMBER] |
| ip_address | IPv4 and IPv6 addresses that parse as such (ipaddress module) | [IP_ADDRESS] |
| phone | international (+81 90-1234-5678, +1 (555) 123-4567), Japanese (03-1234-5678, 090-1234-5678, 0120-123-456), North American (555-123-4567) | [PHONE] |
| postal_code | Japanese postal codes: 〒123-4567, 〒1234567, 123-4567 | [POSTAL_CODE] |

Kinds are tried in that order, so a card number is not also counted as a phone. Regular expressions and check digits
find well-formed identifiers, not names or street addresses (that takes a named-entity model, e.g. Presidio with
spaCy, a heavy dependency without Japanese recognisers out of the box). Records are never dropped.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.records import JsonlWriter, Rejects, iter_records, map_text, run_streaming

MASKS = {"email": "[EMAIL]", "credit_card": "[CREDIT_CARD]", "my_number": "[MY_NUMBER]",
         "ip_address": "[IP_ADDRESS]", "phone": "[PHONE]", "postal_code": "[POSTAL_CODE]"}
# Boundaries are ASCII on purpose: Unicode \w includes kana and kanji, and Japanese writes numbers right next to
# words (電話は03-1234-5678まで). A number must not continue a longer run of digits, even across a space or dash.
_BEFORE = r"(?<![A-Za-z0-9+\-])(?<!\d[ \-])"
_AFTER = r"(?![A-Za-z0-9\-])(?![ \-]\d)"
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(_BEFORE + r"\d(?:[ \-]?\d){12,18}" + _AFTER)
_MY_NUMBER = re.compile(_BEFORE + r"\d{4}[ \-]?\d{4}[ \-]?\d{4}" + _AFTER)
_IPV4 = re.compile(r"(?<![A-Za-z0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![A-Za-z0-9]|\.\d)")
_IPV6 = re.compile(r"(?<![A-Za-z0-9:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![A-Za-z0-9:])")
_PHONE = re.compile(
    r"(?<![A-Za-z0-9+])(?:"
    r"\+\d{1,3}[ \-.]?(?:\(\d{1,4}\)[ \-.]?)?\d{1,4}(?:[ \-.]\d{2,4}){1,3}"  # international
    r"|\(0\d{1,4}\)[ \-]?\d{1,4}[ \-]\d{3,4}"  # Japanese with the area code in brackets: (03) 1234-5678
    r"|0\d{1,4}-\d{1,4}-\d{3,4}"  # Japanese: 03-1234-5678, 090-1234-5678, 0120-123-456
    r"|0[5-9]0\d{8}|0\d{9}"  # Japanese without separators: 09012345678, 0312345678
    r"|\(\d{3}\)[ ]?\d{3}-\d{4}|\d{3}[\-.]\d{3}[\-.]\d{4}"  # North American
    r")" + _AFTER
)
_POSTAL = re.compile(r"〒\s?\d{3}-?\d{4}(?!\d)|" + _BEFORE + r"\d{3}-\d{4}" + _AFTER)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def my_number_valid(digits: str) -> bool:
    """The check digit of the Japanese Individual Number (総務省令: weights 2-7 then 2-6 from the right, mod 11)."""
    body, check = digits[:11], int(digits[11])
    total = sum(int(digit) * (n + 1 if n <= 6 else n - 5) for n, digit in enumerate(reversed(body), start=1))
    remainder = total % 11
    return check == (0 if remainder <= 1 else 11 - remainder)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone_digits_ok(text: str) -> bool:
    return 9 <= len(_digits(text)) <= 15


# kind -> (pattern, a check on the matched text); applied in this order.
DETECTORS: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    ("email", _EMAIL, lambda match: True),
    ("credit_card", _CARD, lambda match: luhn_valid(_digits(match))),
    ("my_number", _MY_NUMBER, lambda match: my_number_valid(_digits(match))),
    ("ip_address", _IPV4, _is_ip),
    # at least three groups: "a::b" in C++ parses as an address too
    ("ip_address", _IPV6, lambda match: len([g for g in match.split(":") if g]) >= 3 and _is_ip(match)),
    ("phone", _PHONE, _phone_digits_ok),
    ("postal_code", _POSTAL, lambda match: True),
]


def mask_pii(text: str, counts: Counter | None = None) -> str:
    """`text` with every detected identifier replaced by its mask; adds what it found to `counts`."""
    for kind, pattern, valid in DETECTORS:
        def replace(match: re.Match[str], kind: str = kind, valid: Callable[[str], bool] = valid) -> str:
            if not valid(match.group()):
                return match.group()
            if counts is not None:
                counts[kind] += 1
            return MASKS[kind]

        text = pattern.sub(replace, text)
    return text


def pii_file(input_path: str | Path, output_path: str | Path, rejects_path: str | Path | None = None,
             skip_bad_lines: bool = False) -> dict[str, Any]:
    def body(writer: JsonlWriter, rejects: Rejects) -> dict[str, Any]:
        counts: Counter = Counter()
        read = changed = 0
        for record in iter_records(input_path, rejects if skip_bad_lines else None):
            read += 1
            if not isinstance(record.data, dict):
                rejects.add(record, "malformed", f"expected an object, got {type(record.data).__name__}")
                continue
            before = sum(counts.values())
            writer.write(map_text(record.data, lambda text: mask_pii(text, counts)))
            changed += sum(counts.values()) > before
        return {"read": read, "records_changed": changed, "masked": {kind: counts[kind] for kind in MASKS}}

    return run_streaming(output_path, rejects_path, body)
