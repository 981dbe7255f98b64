"""Canonical types and errors. Imports nothing else from tollway."""
