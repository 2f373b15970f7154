"""The SQLAlchemy 2 adapter: the Store on SQLite and on PostgreSQL."""
