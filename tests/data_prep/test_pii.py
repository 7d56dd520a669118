"""pii: each kind masked and counted; look-alikes that fail their check digits, and other fields, left alone."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import write_jsonl
from data_prep.pii import luhn_valid, mask_pii, my_number_valid, pii_file


@pytest.mark.parametrize("text, masked, kind", [
    ("Write to taro.yamada+k2@example.co.jp today", "Write to [EMAIL] today", "email"),
    ("Card 4111 1111 1111 1111 exp 12/29", "Card [CREDIT_CARD] exp 12/29", "credit_card"),
    ("カード番号は4111-1111-1111-1111です", "カード番号は[CREDIT_CARD]です", "credit_card"),
    ("マイナンバー: 1234 5678 9018", "マイナンバー: [MY_NUMBER]", "my_number"),
    ("server at 192.168.10.254, port 22", "server at [IP_ADDRESS], port 22", "ip_address"),
    ("v6 address 2001:db8::8a2e:370:7334 here", "v6 address [IP_ADDRESS] here", "ip_address"),
    ("Call +81 90-1234-5678 now", "Call [PHONE] now", "phone"),
    ("call +1 (555) 123-4567 or 555-123-4567", "call [PHONE] or [PHONE]", "phone"),
    ("電話は03-1234-5678まで", "電話は[PHONE]まで", "phone"),
    ("携帯 090-1234-5678、フリーダイヤル 0120-123-456", "携帯 [PHONE]、フリーダイヤル [PHONE]", "phone"),
    ("番号は09012345678です", "番号は[PHONE]です", "phone"),
    ("〒100-0001 東京都千代田区", "[POSTAL_CODE] 東京都千代田区", "postal_code"),
    ("郵便番号 150-0002 渋谷区", "郵便番号 [POSTAL_CODE] 渋谷区", "postal_code"),
])
def test_each_kind_is_masked_and_counted(text, masked, kind):
    counts = Counter()
    assert mask_pii(text, counts) == masked
    assert set(counts) == {kind}


@pytest.mark.parametrize("text", [
    "Order 4111 1111 1111 1112 failed",  # fails Luhn
    "ID 1234 5678 9012",  # 12 digits with a wrong My Number check digit
    "version 999.1.2.3 and 1.2.3",  # not an IP address
    "Released 2024-01-15 at 12:30:45",  # dates and times
    "std::vector and a::b in C++",
    "It costs 12,800 yen and boils 1.7 litres in 4 minutes.",
])
def test_look_alikes_are_left_alone(text):
    counts = Counter()
    assert mask_pii(text, counts) == text and not counts


def test_check_digits():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert my_number_valid("123456789018") and not my_number_valid("123456789012")


def test_file_masks_every_text_field_and_nothing_else(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "My email is a@b.com", "name": "a@b.com"},
                      {"role": "assistant", "content": "Thanks, we will call 03-1234-5678."}],
         "contact": "a@b.com", "id": 1},
        {"prompt": "IP 10.0.0.1?", "chosen": "Yes.", "rejected": "mail me at x@y.org", "id": 2},
        {"text": "nothing personal here", "id": 3},
    ]
    summary = pii_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl")
    first, second, third = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert first["messages"][0] == {"role": "user", "content": "My email is [EMAIL]", "name": "a@b.com"}
    assert first["messages"][1]["content"] == "Thanks, we will call [PHONE]."
    assert first["contact"] == "a@b.com" and first["id"] == 1  # fields that are not text are not ours to change
    assert second == {"prompt": "IP [IP_ADDRESS]?", "chosen": "Yes.", "rejected": "mail me at [EMAIL]", "id": 2}
    assert third == rows[2]
    assert summary["masked"] == {"email": 2, "credit_card": 0, "my_number": 0, "ip_address": 1, "phone": 1,
                                 "postal_code": 0}
    assert summary["records_changed"] == 2 and summary["written"] == 3
