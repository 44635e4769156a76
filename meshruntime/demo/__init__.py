"""Demo helpers that run next to the runtimes (``make demo``); not used in production."""
