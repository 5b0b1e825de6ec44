"""Framework adapters, installed as ``cdptrack.integrations.<name>``."""
