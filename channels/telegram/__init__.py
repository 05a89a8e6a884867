"""Telegram over python-telegram-bot: webhook mode, inline keyboards, contact sharing."""
