"""Framework-free domain core: models, ranking, redaction and record events (no I/O)."""
