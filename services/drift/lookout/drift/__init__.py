"""lookout.drift: placeholder package; the service lands with its issue."""
