"""Runnable example shops wired with cdptrack (installed as ``cdptrack.examples``)."""
