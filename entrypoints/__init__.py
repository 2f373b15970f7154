"""Entrypoints: the HTTP app, the CLI, and the container that composes everything."""
