"""Tests that need vLLM and a CUDA GPU; skipped everywhere else."""
