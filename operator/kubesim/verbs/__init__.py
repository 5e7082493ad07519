"""The semantics of particular API verbs, as functions over the store's public verbs."""
