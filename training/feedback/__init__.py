"""`python -m training feedback ...`: review, pull, delete and purge the page's feedback."""
