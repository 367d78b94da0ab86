"""The auth service: accounts, passwords and the tokens that prove who a caller is."""
