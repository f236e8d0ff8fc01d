"""lookout.judge: placeholder package; the service lands with its issue."""
