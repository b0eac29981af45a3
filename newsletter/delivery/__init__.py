"""Deliver a rendered issue: the engine claims batches from the ledger, hands them to an ESP
adapter and records what the provider said about each recipient."""
