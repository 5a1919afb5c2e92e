"""The Textual chat app (`myna chat`)."""
