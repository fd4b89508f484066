"""The database and what lives beside it: engine, ORM models, schema, members."""
