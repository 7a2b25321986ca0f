"""Configuration, database and infrastructure shared by every other package."""
