"""Exact-match response cache for deterministic chat requests.

``keys`` says whether a request may be cached (``cacheable``) and under which key
(``cache_key``); ``store`` keeps complete answers (``MemoryCache`` in-process, ``RedisCache``
shared across replicas) and replays them as streams (``completion_to_chunks``) or assembles a
streamed answer for storing (``chunks_to_completion``).
"""
