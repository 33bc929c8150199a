"""Everything that touches llama.cpp: GGUF headers, the native backend, tokenization."""
