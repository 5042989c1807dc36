"""Validation suites: scenarios x models run through the scheduler, then a verdict and a pack."""
