"""The HTTP edge: the Flask app and pure signature checks."""
