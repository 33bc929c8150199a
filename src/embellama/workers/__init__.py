"""Supervised worker processes that own the llama.cpp contexts."""
