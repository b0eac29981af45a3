"""The HTTP side of the newsletter: for now, the endpoint providers post their webhooks to."""
