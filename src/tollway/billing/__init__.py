"""Prices, reservations, the ledger's write-behind and monthly quotas."""
