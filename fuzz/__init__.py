"""Fuzzing of the protocol's untrusted-input surface: shared rig, generators and the driver."""
