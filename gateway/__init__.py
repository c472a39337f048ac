"""MASH Gateway: a privacy-preserving information-sharing gateway for Multi-Agency Safeguarding Hubs."""

__version__ = "0.1.0"
