"""The scaleset command line."""
