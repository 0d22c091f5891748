"""The chat page: the conversation and its view, the composer, the sidebar of chats, the chat controller."""
