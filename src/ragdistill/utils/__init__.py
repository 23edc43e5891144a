"""Small shared helpers (atomic writes, checksums, seeding, devices)."""
