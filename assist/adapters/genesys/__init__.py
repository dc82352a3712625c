"""Genesys Cloud adapter: OAuth client credentials, resilient REST, the async-query provider."""
