"""The edges: HTTP, SQL stores, the command line."""
