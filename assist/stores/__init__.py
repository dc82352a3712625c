"""Redis-backed stores and the audit file: the state of the server, behind small classes."""
