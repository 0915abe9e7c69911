"""The fairness audit: FairFace labels, group metrics with bootstrap CIs, its reports."""
