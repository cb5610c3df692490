"""The ingest function: dataset uploads and training requests, as events."""
