"""Exports that keep overlapping cells as separate objects."""
