"""Load-aware routing: what the models are doing now, and when a request should go elsewhere.

- ``stats``: live statistics per logical model (time to first token, output speed, latency,
  error rate, answer length per task), decaying averages that start from the catalog's figures.
- ``board``: requests in flight per self-hosted engine, this replica's own and the engines'
  reports (which every ingress replica reads), against the engines' capacity.
- ``estimate``: when a new request would get its first token and its whole answer, per model.
- ``spill``: a request's latency need, and the hysteresis that keeps spill-over from flapping.
- ``tracked``: the backend wrapper that feeds the statistics and the in-flight counts.
- ``monitor``: ``LoadMonitor``, the one object the service holds.
"""
