"""placeholder during development"""
