"""The SQL job store (SQLite through aiosqlite, PostgreSQL through asyncpg)."""
