"""The pure decision core: events, context, rules, decisions, policies and ports.

Nothing here reads the clock, the environment or the network, and nothing imports
Flask, Redis, an HTTP client or Jinja: plain data in, plain data out.
"""
