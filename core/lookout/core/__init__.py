"""lookout-core: what every Lookout service shares (schemas, topics, settings, storage, auth)."""
