"""The `embellama` command line."""
