"""The OpenAI-compatible HTTP layer: routes, errors, security, metrics. No inference."""
