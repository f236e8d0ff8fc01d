"""lookout.retrain_trigger: placeholder package; the service lands with its issue."""
