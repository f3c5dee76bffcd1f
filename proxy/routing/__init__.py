"""routing: see ../../README.md#layout."""
