"""The pure domain: job states and transitions, run outcomes, retry policy, errors.

Nothing here performs I/O or reads a clock; time and randomness are passed in.
"""
