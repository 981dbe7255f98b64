"""City's error body: ``{"error": {"code", "message"}}`` with the status on the response.

| status | code | when |
| 400 | invalid_request | a body that is not JSON, a field missing or of the wrong type |
| 401 | unauthorized | no token, or a bad one, for an action that needs a user |
| 403 | forbidden / studio_mismatch / studio_paused | the wrong identity, another studio, a paused studio |
| 404 | not_found | an unknown service or action |
| 405 | method_not_allowed | GET on a POST action, or the reverse |
| 501 | not_implemented | an action whose capability does not exist yet (the media pipeline) |
| 5xx | upstream / internal codes | as the other dialects |
"""

from __future__ import annotations

from typing import Any

from tollway.core.errors import TollwayError

_RENAMES = {"invalid_api_key": "unauthorized", "permission_denied": "forbidden"}


def city_error_body(err: TollwayError) -> dict[str, Any]:
    return {"error": {"code": _RENAMES.get(err.code, err.code), "message": err.message}}
