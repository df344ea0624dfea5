"""Stage 4, state: what each gate has done (in memory) and its durable copy (SQLite)."""
