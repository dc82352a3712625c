"""Background delivery layer: RQ job functions, the worker entry point (and later the stream)."""
