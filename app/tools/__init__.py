"""Tools: MCP servers the model may use, with the user approving each call (no Qt).

* :mod:`.config`: the servers the user added (a command or a URL), their secrets
  in the keyring, and the import of a Claude-Desktop-style ``mcpServers`` file;
* :mod:`.mcp_client`: one server's connection through the official ``mcp`` SDK,
  on an event loop of its own, with timeouts and clear errors;
* :mod:`.hub`: the servers in use, their tools, which tools each chat has on,
  the approval policy, and running a call.
"""
