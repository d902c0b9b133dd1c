"""Target encodings: each codec owns its encode/decode pair (pure NumPy reference)."""
