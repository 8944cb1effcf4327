"""The engine (private): one run of `poll_jobs`.

Scheduling every job's turns, the per-job state machine, naps and the final sweep, and the
ledger of what happened. Imports the Lucidity client, the state store, the pacing and the
vocabulary; nothing here imports the command line.
"""
