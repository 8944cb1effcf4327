"""Benchmarks of async-poller (`make bench`, or `python -m bench --help`).

Four benchmarks, each a module with a `run(settings)` returning a JSON-able section of the
results: `efficiency` (detection lag under a 45/min budget, against a naive round-robin
poller), `overhead` (throughput and CPU per request with the budget lifted, against a plain
aiohttp loop), `scale` (100k and 1M ids: memory, time to first request, input reading) and
`startup` (`--version`, `--help`, `poll --once`). `python -m bench` runs them and writes
`bench/results/latest.{json,md}`.
"""
