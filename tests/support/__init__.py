"""Reusable test parts: real local servers that behave like the APIs cdptrack talks to."""
