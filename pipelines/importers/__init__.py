"""Importers: a CRM's own export -> the contract's event files and reference folder.

``salesforce``: a Salesforce data export (``revattr import salesforce``), see
``docs/import-salesforce.md``.
"""
