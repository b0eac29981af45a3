"""Provider events (bounces, complaints, unsubscribes, deliveries, opens, clicks) from webhooks.

Each provider module turns its webhook's body into provider-neutral
:class:`~newsletter.events.model.ProviderEvent` values; ``newsletter.store.events`` stores and
applies them, and ``newsletter.web.app`` receives them over HTTP.
"""
