"""What the request pipeline (pipeline.py) checks: public paths, request ids, the caller behind a key."""

from __future__ import annotations

import re

from starlette.authentication import BaseUser

from adapters.keys import Principal

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The request's state holds the key's secret under this name while the key was taken from
# memory (HotReads.remembered) and not yet confirmed, by a commit or by a read.
UNCONFIRMED_KEY = "unconfirmed_key"


class KeyUser(BaseUser):
    """The caller behind a valid key."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.key_id
