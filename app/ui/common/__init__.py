"""What several pages share: the message bridge, the look, Markdown and the safe rich-text view."""
