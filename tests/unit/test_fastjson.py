"""The orjson encoders on the usage hot paths produce the standard library's JSON document."""

from __future__ import annotations

import json

from adapters.fastjson import dumps_compact
from api.fastjson import FastJSONResponse


def test_compact_matches_the_standard_encoder() -> None:
    value = {"model": "gpt-ü", "n": 3, "ratio": 0.1, "tags": ["a", None, True], "o": {}}
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert dumps_compact(value) == expected.encode()


def test_integers_beyond_64_bits_fall_back_to_the_standard_encoder() -> None:
    value = {"tokens": 2**70}
    assert dumps_compact(value) == b'{"tokens":1180591620717411303424}'
    assert json.loads(FastJSONResponse(value).body) == value


def test_response_body_is_the_same_document() -> None:
    value = {"accepted": 1, "results": [{"index": 0, "status": "accepted"}]}
    response = FastJSONResponse(value, status_code=200)
    assert json.loads(response.body) == value
    assert response.media_type == "application/json"
