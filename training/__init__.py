"""Training, evaluation, export and fairness audit: `python -m training <command> --help`."""
