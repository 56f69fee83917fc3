"""Everything that speaks Slack: events in, answers out."""
