"""HTTP API blueprints: each handler validates, calls one service function, serializes."""
