"""Petition statistics (信访大数据): every figure defined once in :mod:`.figures`."""
