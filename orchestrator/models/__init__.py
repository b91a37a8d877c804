"""Model architectures, precision formats and the backend support matrix (pure data)."""
