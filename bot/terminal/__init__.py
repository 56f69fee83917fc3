"""Terminal commands: ask, check, the usage report."""
