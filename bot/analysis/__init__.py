"""Everything that speaks OpenAI: the Responses stream, conversations, containers and files."""
