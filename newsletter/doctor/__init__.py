"""``newsletter doctor``: the sending set-up checked line by line, before a send finds it broken.

Each module checks one part and returns :class:`~newsletter.doctor.model.Check` lines: ``dns``
(SPF, DMARC, DKIM and alignment of the From domain), ``provider`` (the account, read-only, and its
webhooks), ``site`` (the links every email carries), ``service`` (database, secret, worker, the next
scheduled send) and ``health`` (complaint and bounce rates of the last sends). ``run`` puts them
together in the order a reader fixes things.
"""
