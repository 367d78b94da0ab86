"""Settings of the gateway."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from shared.settings import CommaSeparatedList, CommonSettings
from shared.validators import blank_to_none


def _service_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


ServiceUrl = Annotated[str, AfterValidator(_service_url)]
Seconds = Annotated[float, Field(gt=0, le=600)]


class GatewaySettings(CommonSettings):
    # Read by the launcher (app.py / supervisord), listed here so one place documents it.
    port: int = Field(default=7860, ge=1, le=65535)
    auth_service_url: ServiceUrl = "http://127.0.0.1:8001"
    task_service_url: ServiceUrl = "http://127.0.0.1:8002"
    allowed_origins: CommaSeparatedList = ["http://localhost:3000", "https://*.vercel.app"]
    max_body_bytes: int = Field(default=1_048_576, ge=0)
    # The whole request body must arrive within this; nothing is sent upstream before it has.
    body_timeout: Seconds = 10.0
    upstream_connect_timeout: Seconds = 5.0
    upstream_timeout: Seconds = 30.0
    health_timeout: Seconds = 2.0
    # Who may embed the app in a frame: the Space page on huggingface.co does.
    frame_ancestors: str = "'self' https://huggingface.co https://*.hf.space"
    # Unset: the public /metrics answers 404. Set: it answers `Authorization: Bearer <token>`.
    metrics_token: Annotated[SecretStr | None, BeforeValidator(blank_to_none)] = None
