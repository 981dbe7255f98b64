"""Admission and settlement (``admission``), prices, wallets with their holds and monthly quotas,
and the ledger's write-behind."""
