"""The experimentation domain: pure Python, no framework, no driver."""
