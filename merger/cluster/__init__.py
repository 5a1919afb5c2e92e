"""Running per-author work here or on a Ray cluster (units.py)."""
