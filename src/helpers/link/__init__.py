"""名寄せ: link records without a resident code to the registry (probabilistic, splink)."""
