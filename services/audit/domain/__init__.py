"""Audit's rules, pure: the exact bytes recorded for each message, the hash chain that
makes rewriting or dropping one visible, and what an entry is about."""
