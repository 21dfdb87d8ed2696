"""Training side: the model definition and its export. Runtime code never imports this package."""
