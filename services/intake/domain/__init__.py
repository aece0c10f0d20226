"""Intake's rules, pure: who the child is (CNP, pseudonym), how urgent (triage), who must
know (routing), and what a new case is."""
