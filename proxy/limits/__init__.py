"""limits: see ../../README.md#layout."""
