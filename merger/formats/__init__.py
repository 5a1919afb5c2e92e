"""Adapter files: the base model's shape, LoRA arrays, GGUF and PEFT files and the bridge
between them, publishing an adapter for the engine and exporting it for the user.

The bottom room of `merger`: it imports nothing else of `merger`.
"""
