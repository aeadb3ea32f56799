"""Verifiable tasks: synthetic arithmetic, protein rewards, MATH answer checking, tokenizers."""
