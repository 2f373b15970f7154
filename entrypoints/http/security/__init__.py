"""Who may call: bearer tokens and keys, JWTs, and per-principal rate limits."""
