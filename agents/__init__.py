"""Buyer, vendor and broker daemons: thin asyncio shells around the protocol cores."""
