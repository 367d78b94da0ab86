"""Entry point: `uvicorn gateway.main:app --proxy-headers`, configured by the environment."""

from gateway.app import create_app

app = create_app()
