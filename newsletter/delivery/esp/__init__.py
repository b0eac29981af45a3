"""ESP adapters, one module per provider; :func:`newsletter.delivery.esp.registry.adapter_for`
builds the configured one."""
