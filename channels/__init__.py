"""Channels: one module per channel behind :class:`channels.base.Channel`, an explicit registry."""
