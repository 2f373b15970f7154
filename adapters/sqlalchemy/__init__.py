"""The SQLAlchemy 2 adapter: the Store on SQLite (and any SQL database SQLAlchemy speaks)."""
