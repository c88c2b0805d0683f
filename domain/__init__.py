"""The pure domain: the Task aggregate, its events, commands and rules.

Nothing here knows about HTTP or SQL.
"""
