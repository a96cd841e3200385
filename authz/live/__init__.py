"""Live access: what happens to connections that are already open when access
narrows (docs/live-access.md). Token cut-offs, the disconnect outbox, the
cuts themselves, receipts, and the sweep that acts at a share's end."""
