"""The ``micropay`` command: parsing, sub-commands and their handlers."""
