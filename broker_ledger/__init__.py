"""The broker's event-sourced, tamper-evident ledger."""
