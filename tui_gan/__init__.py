"""gan-tui's terminal dashboard (Textual) and command line."""
