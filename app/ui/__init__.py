"""The desktop app: Qt widgets, Qt item models and controllers, one package per page.

``main`` starts the app, ``window`` assembles the pages, menus and status bar
(``status``), ``autopilot`` drives the real window for the soak test and the
self-test, ``platform_check`` asks whether Qt can open a window at all.  The
pages: ``chat/`` (conversation, composer, sidebar, controller), ``models/``
(Discover, Downloads, My models, the first-run page), ``documents/``,
``tools/`` and ``settings/`` (app settings, About, servers); ``common/`` holds
what several pages share (the message bridge, theme, Markdown, the safe text view).
"""
