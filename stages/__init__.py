"""Thin typer commands, one per DVC stage: read params, call `pipeline`, write outputs."""
