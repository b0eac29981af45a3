"""Checks that reach out: the link fetcher of ``check --links``, ``send`` and the worker.

It sits between content and delivery on the data path: it imports content (which URLs an email
carries, what an answer means) and the configuration, and is imported by ``delivery`` (``send``
refuses or warns before sending) and by ``doctor``. It knows nothing of rendering or the store, so
``check --links`` runs on an editor's machine without a database.
"""
