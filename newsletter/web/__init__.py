"""The HTTP side of the newsletter: the webhook endpoint providers post to (``app``) and the
editors' live preview (``preview``)."""
