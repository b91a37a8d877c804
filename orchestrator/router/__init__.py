"""Routing policies and admission (pure, no Ray): the live router and the simulator share them."""
