"""Data access: one module per aggregate, one DynamoDB access pattern per method (see TABLE.md)."""
