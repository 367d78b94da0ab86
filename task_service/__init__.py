"""The task service: each user's tasks, behind tokens it verifies itself."""
