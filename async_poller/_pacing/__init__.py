"""When requests may leave (private), and when to ask again.

The rate budget with its pacer and adaptive rate, the stores that share one budget across a
tenant's processes, and the retry delays. Imports only the vocabulary.
"""
