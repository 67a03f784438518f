"""The interactive-query API: generated messages (``v1``) and their conversions."""
