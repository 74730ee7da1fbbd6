"""What an article is worth as evidence, decided by code: its design and level, and whether it is
evidence at all (retracted work, notices, letters and the like are set aside)."""
