"""Tools in the window: the approval bar, the chat's tool switches and the tool servers dialog."""
