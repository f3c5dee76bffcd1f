"""observe: see ../../README.md#layout."""
