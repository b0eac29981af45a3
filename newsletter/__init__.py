"""newsletter: write a weekly email newsletter as files in git and deliver it to subscribers.

The data flows through one sub-package per stage: ``content`` (issue file -> model), ``render``
(model -> HTML and text), ``store`` (subscribers and the send ledger in SQL), and later
``delivery`` (ledger -> ESP) and ``web`` (archive, unsubscribe, webhooks).
"""

__version__ = "0.1.0"
