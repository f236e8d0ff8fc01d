"""Test fixtures that start real brokers and stores."""
