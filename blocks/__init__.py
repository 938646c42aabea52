"""The block library: declarations, templates and the sandboxed renderer."""
