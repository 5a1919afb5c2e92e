"""Memory: the user's history and documents as snippets that answers can retrieve (RAG)."""
