"""The state store (private): the SQLite file behind `--state`. Imports only the vocabulary."""
