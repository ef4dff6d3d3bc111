"""CPU inference engine: serve Hugging Face causal LMs, with a tiny offline demo model."""
