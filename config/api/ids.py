"""Object ids in requests.

Ids are 64-bit (BigAutoField); SQLite cannot compare a larger number with an
integer column at all (OverflowError, a 500), so every API field or filter
taking an id bounds it here and larger input is refused as bad (400).
"""
MAX_ID = 2**63 - 1
