"""Storage adapters: the embedded SQLite store and Redis."""
