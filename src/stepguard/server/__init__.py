"""stepguard."""
