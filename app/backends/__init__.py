"""Backends: what answers a chat request for a logical model (``base.Backend``).

How a cloud adapter is laid out, the same for every provider:

- ``<provider>_translate.py``, the translator: pure functions, no I/O. Our request to the
  provider's, the provider's responses and stream events back to OpenAI objects (built through
  ``app.openai_wire``; a ``StreamTranslator`` where a stream needs state), and
  ``error_from_<provider>(provider, status, body, headers=None) -> RouterError`` for its error
  bodies (``status`` None when the error had no HTTP status of its own). It is
  the one module the client imports for translation; a translator that outgrows one file
  (~450 lines) splits into ``<provider>_request.py`` and ``<provider>_response.py``, which it
  re-exports: Gemini's does, OpenAI's and Anthropic's fit in one file.
- ``<provider>_client.py``, the thin client on the provider's SDK: ``<Provider>Client`` (one
  per provider: the SDK client and its connection pool, built on first use, SDK retries off;
  ``aclose()`` may be repeated), ``<Provider>Backend`` (one per logical model, on its
  provider's client: the ``Backend`` protocol; ``_error(exc)`` maps every SDK and transport
  failure through the translator's ``error_from_<provider>`` or ``cloud.error_for_transport``),
  and ``make_client(provider, env)`` / ``build(name, provider, config, env, client=None)``
  for ``registry``, which gives every model of a provider the same client.
- ``cloud.py``: what the adapters share (status and transport failures onto the router's error
  tree, credential redaction, headers, ``Retry-After``).
- ``prompt_cache.py``: what the adapters share for provider prompt caching (on or off per model,
  the minimum prefix, token estimates, prefix keys), with ``anthropic_cache.py`` (breakpoints) and
  ``gemini_cache.py`` (context caches). Every adapter reports caching in the usage block's
  ``prompt_tokens_details``: ``cached_tokens`` (read), ``cache_write_tokens`` (written) and, for a
  Gemini context cache made for the request, ``cache_storage_token_hours`` (priced by
  ``app.budget.pricing``, so the ledger's cost includes it); ``prompt_tokens`` counts reads and
  writes.

Error chaining, the same wherever a foreign exception is caught (the SDKs and their HTTP
stacks here, Ray in ``serve_handle``): the ``RouterError`` is built inside the ``except`` and
raised after it, ``from None``, so neither ``__cause__`` nor ``__context__`` holds the foreign
exception and ``__suppress_context__`` is set. SDK exceptions carry the request and its headers
(the key among them); Ray's carry a replica's traceback, which can quote a request. What the
router needs (class, message, retry hint, the foreign type's name) is in the mapped error.
"""
