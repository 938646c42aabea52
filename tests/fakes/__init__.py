"""Fakes shared by the tests: a clock, an in-memory platform client and fake platform APIs."""
