"""The aiohttp application: JSON API, pages, CLI; wires every other package together."""
