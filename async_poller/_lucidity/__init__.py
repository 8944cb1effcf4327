"""The Lucidity client (private): the transport, access tokens, and what an answer means.

Every request leaves within `_pacing`'s budget. Imports only `_pacing` and the vocabulary.
"""
