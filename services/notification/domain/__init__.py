"""Notification's rules, pure: who is told what about a case (notices) and the words they
read (messages), with nothing about the child beyond the case id."""
