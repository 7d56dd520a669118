"""Data preparation: converters, deduplication, filters and decontamination (`python -m data_prep ...`).

Not built yet; see the data_prep issue.
"""
