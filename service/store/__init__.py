"""The store: SQLModel tables, Alembic migrations, and the functions that read and write them."""
