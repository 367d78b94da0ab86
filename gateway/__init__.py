"""The gateway: the one public process, routing to the auth and task services."""
