"""Orchestra's own LLM layer: one async interface over Anthropic and OpenAI (no LangChain).

``types`` is the provider-neutral data model, ``errors`` the error taxonomy, ``client`` the
router with retries; each provider's adapter lives in its own module and imports its SDK
only when it is used, so the CLI starts fast.
"""
