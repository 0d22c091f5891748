"""Documents in a chat: the indexing service, the documents panel and the passage viewer."""
