"""Adapters at the edges: Genesys Cloud and providers (HTTP), the RQ task queue, analytics sink."""
