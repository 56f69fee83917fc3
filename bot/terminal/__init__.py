"""Terminal commands: the usage report and forget (later: ask, check)."""
