"""Command-line entry point `lmi-distributed` (see `main.py`)."""
