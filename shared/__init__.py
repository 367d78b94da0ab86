"""What the auth and task services (and the gateway) share: settings, database, tokens, logs."""

__version__ = "1.0.0"
