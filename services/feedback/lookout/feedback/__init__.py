"""lookout.feedback: placeholder package; the service lands with its issue."""
