"""Miffi-class cryo-EM micrograph filtering: intake, preprocessing, inference, export."""

__version__ = "0.1.0"
