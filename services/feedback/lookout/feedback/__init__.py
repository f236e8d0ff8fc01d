"""lookout.feedback: end-user thumbs, the reviewer queue and its web UI, dataset export."""
