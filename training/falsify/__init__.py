"""Labelled fakes for the fairness audit: the `falsify` command, its encoder interface, pSp."""
