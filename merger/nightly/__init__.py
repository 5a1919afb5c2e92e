"""The nightly personalization: a run (select, merge, score, publish), its records and its
schedule. The top room of `merger`: it may import every other room.
"""
