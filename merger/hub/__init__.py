"""Community adapter hubs: pulling and verifying adapters, building a hub from public
authors' text, and serving a hub folder over HTTP.

Imports `formats`, `data` and `training`.
"""
