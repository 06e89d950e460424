"""Screens: the dashboard, its modals (help, quit, confirm, export, notes, digit), compare and sweep (each with its app)."""
