"""GrowthBook: the REST client (``client``) on its HTTP layer (``transport``) and its I/O-free
rule reconciliation (``reconcile``), and plans expressed as GrowthBook rules and saved groups
(``rules``)."""
