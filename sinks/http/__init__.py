"""The HTTP sender's pure decisions: signing, retry timing and outcome classification.

The modules here do no I/O and never read the clock; the sender passes time in and
acts on the values they return.
"""
