"""HTTP route handlers, one module per route group."""
