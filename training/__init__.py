"""training: turns features into FAA checkpoints (imports faa_core, never the reverse)."""
