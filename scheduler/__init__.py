"""wattsched: plans what runs where on a converted mining site, under every power and cooling limit."""
__version__ = "0.1.0"
