"""Modal screens: help, confirmations."""
