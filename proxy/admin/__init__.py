"""admin: see ../../README.md#layout."""
