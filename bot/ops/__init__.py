"""Operating the bot: health and readiness endpoints, Prometheus metrics, log setup."""
