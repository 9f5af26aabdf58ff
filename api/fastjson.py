"""JSON answers on the usage hot paths, rendered by orjson (the encoder is
`adapters/fastjson.py`, which falls back to the standard library on values orjson refuses)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

__all__ = ["FastJSONResponse"]


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse, rendered by orjson (same document, same media type)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except (orjson.JSONEncodeError, TypeError):
            return super().render(content)
