"""Genesys Agent Copilot suggestion engagements (real API, shared/reference/genesys-cloud.md §4a).

`POST /api/v2/conversations/{conversationId}/suggestions/{suggestionId}/engagement` with a
`SuggestionEngagement` `{engagementType: Dismissed|Copied|Opened|Feedback, feedback: {rating}}`
tells Genesys what the agent did with a Copilot suggestion (it changes the suggestion's state
and fires a new notification). Through the shared OAuth token and the Genesys retry rules.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.circuit import COPILOT_ENGAGEMENT
from assist.adapters.genesys.errors import raise_for_status

ENGAGEMENT_PATH = "/api/v2/conversations/{conversation}/suggestions/{suggestion}/engagement"


class GenesysCopilot:
    def __init__(self, tokens: TokenProvider, api_base_url: str) -> None:
        self._tokens = tokens
        self._base = api_base_url.rstrip("/")

    def engage(self, conversation_id: str, suggestion_id: str, engagement: dict[str, Any]) -> None:
        path = ENGAGEMENT_PATH.format(
            conversation=quote(conversation_id, safe=""), suggestion=quote(suggestion_id, safe="")
        )
        response = self._tokens.send(
            "POST", self._base + path, circuit=COPILOT_ENGAGEMENT, json=engagement
        )
        raise_for_status(
            response.status_code,
            response.headers.get("ININ-Correlation-Id"),
            what="suggestion engagement: Genesys",
        )
