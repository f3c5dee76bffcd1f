"""request: see ../../README.md#layout."""
