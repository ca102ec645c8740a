"""The `report` stage's library: published numbers, metrics collection, tables, plots, qualitative pages."""
