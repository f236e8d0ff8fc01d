"""lookout-sdk (placeholder until the SDK lands)."""
