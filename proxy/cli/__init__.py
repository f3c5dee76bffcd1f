"""cli: see ../../README.md#layout."""
