"""The user's SQLite database: one file, opened in one place, changed through migrations."""

from assistant.store.database import describe_sqlite_error, open_database

__all__ = ["open_database", "describe_sqlite_error"]
