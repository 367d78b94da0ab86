"""Entry point: `uvicorn auth_service.main:app`, configured by the environment."""

from auth_service.app import create_app

app = create_app()
