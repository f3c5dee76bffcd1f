"""api: see ../../README.md#layout."""
