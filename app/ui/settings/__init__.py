"""App-wide settings and About, and the servers (remote models, the local API)."""
