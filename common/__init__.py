"""Small helpers every app may use: the cache, the command base class, validators, routing's match fields.

A leaf: it imports the standard library and Django, never `exoclaw`, `agents`, `routing`, `sandbox`
or `webhooks`, so any of them can import it without depending on another. Not a Django app.
"""
