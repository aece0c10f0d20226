"""Audit's rules, pure: the exact bytes recorded for each message (entries), what an entry
is about (subjects), the RFC 9162 Merkle tree over them (merkle), its signed checkpoints
(checkpoint), the verifier an auditor runs on an export (offline) and the CSV export's
cells made safe for a spreadsheet (spreadsheet)."""
