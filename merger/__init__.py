"""Personalization: LoRA adapters (training, conversion, merging, search, hub).

Depends on `assistant`, never the other way round. torch and transformers are imported
inside the functions that need them.
"""
