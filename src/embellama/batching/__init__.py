"""Grouping inputs into llama.cpp decodes: token-budget packing and the server's scheduler."""
