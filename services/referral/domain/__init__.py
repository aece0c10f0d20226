"""Referral rules, pure."""
