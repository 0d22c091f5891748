"""Paddock's local API for other programs: OpenAI's and Ollama's (``paddock serve``, or the app's switch).

* :mod:`.server`: the server and its routes;
* :mod:`.guard`: Host, Origin, content-type and key checks (no web page can use the API);
* :mod:`.models`: which models are served and the engines that run them (on demand, restarted if they die);
* :mod:`.openai_api` and :mod:`.ollama_api`: each protocol's handlers;
* :mod:`.params`: every request field honoured or refused;
* :mod:`.run`: one generation on its own thread.
"""

from app.api.server import ApiServer

__all__ = ["ApiServer"]
