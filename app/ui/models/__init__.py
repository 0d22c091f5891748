"""The Models area (Discover, Downloads, My models), the work behind it, and the first-run page."""
