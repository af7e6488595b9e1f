"""The SQL store: schema, one-transaction writes, trend reads."""
