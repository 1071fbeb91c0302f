"""The sans-I/O PayWord protocol core: messages, crypto, chains and the three state machines."""
