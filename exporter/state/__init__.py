"""The state: what each gate has done (in memory) and its durable copy (SQLite)."""
