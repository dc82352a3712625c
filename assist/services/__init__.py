"""Use-cases: what the web handlers and the jobs call. Each function takes `Services` first."""
