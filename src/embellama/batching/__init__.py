"""Grouping inputs into llama.cpp decodes: the one queue and packer (`scheduler.py`),
shared by the library and the server; it never knows what runs the decodes."""
