"""The credit ledger: accounts, immutable transactions, and the services that move credits."""
