"""Renderers: pure functions from a `Sheet` to content (text, bytes, notebooks)."""
