"""dispatch: see ../../README.md#layout."""
