"""Putting one component's files in place on its host, and diagnosing what is there."""
