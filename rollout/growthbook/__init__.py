"""GrowthBook: the REST client (``client``) and plans expressed as GrowthBook rules and saved
groups (``rules``)."""
