"""Platform and storage adapters; each imports only `connector.core`."""
