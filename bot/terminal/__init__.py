"""Commands for a terminal: forget (and, later, ask, check, usage)."""
