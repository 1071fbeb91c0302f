"""What tests, benchmarks and fuzzers share: ``world`` (seeded keys, an in-memory world) and
``forgery`` (credentials and envelopes made by hand, signed with whatever key is given)."""
