"""Entry point: `uvicorn task_service.main:app`, configured by the environment."""

from task_service.app import create_app

app = create_app()
