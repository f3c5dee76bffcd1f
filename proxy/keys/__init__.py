"""keys: see ../../README.md#layout."""
