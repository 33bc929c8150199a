"""Everything that touches llama.cpp: GGUF headers, the native model, tokenization."""
