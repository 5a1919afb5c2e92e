"""Training a LoRA adapter with torch and PEFT: the torch base model and the training loop.

Imports `formats` and `data`. torch is imported inside the functions that need it.
"""
