"""Pieces shared by two or more paperlab projects (nothing paper-specific)."""
