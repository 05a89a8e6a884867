"""Telegram set-up: register the webhook, or poll for local development.

    python -m channels.telegram webhook          # setWebhook(PUBLIC_BASE_URL/channels/telegram)
    python -m channels.telegram poll --gateway http://127.0.0.1:8000

Polling (no public URL needed) removes the webhook, then forwards each update to the
gateway's own webhook with the secret token, so both modes share one code path. An
update is acknowledged to Telegram (the offset moves past it) only once the gateway
took it; the gateway answers a repeated ``update_id`` once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import httpx
from telegram import Bot

from bot.settings import Settings, get_settings
from channels.telegram.channel import ALLOWED_UPDATES, SECRET_HEADER
from channels.telegram.sender import make_bot

logger = logging.getLogger("civicgate.telegram")


def webhook_url(settings: Settings) -> str:
    if settings.public_base_url is None:
        raise SystemExit("PUBLIC_BASE_URL is required to register a webhook")
    return f"{str(settings.public_base_url).rstrip('/')}/channels/telegram"


async def register_webhook(settings: Settings, bot: Bot) -> str:
    assert settings.telegram_webhook_secret is not None
    url = webhook_url(settings)
    async with bot:
        await bot.set_webhook(
            url,
            secret_token=settings.telegram_webhook_secret.get_secret_value(),
            allowed_updates=list(ALLOWED_UPDATES),
        )
    return url


async def poll(
    settings: Settings, bot: Bot, gateway: str, rounds: int | None = None, wait: int = 25
) -> int:
    """Forward updates to the gateway until stopped (or for ``rounds`` polls); how many
    were forwarded."""
    assert settings.telegram_webhook_secret is not None
    headers = {SECRET_HEADER: settings.telegram_webhook_secret.get_secret_value()}
    target = f"{gateway.rstrip('/')}/channels/telegram"
    offset, forwarded, done = 0, 0, 0
    async with bot, httpx.AsyncClient(timeout=30) as client:
        await bot.delete_webhook()
        while rounds is None or done < rounds:
            done += 1
            updates = await bot.get_updates(
                offset=offset, timeout=wait, allowed_updates=list(ALLOWED_UPDATES)
            )
            for update in updates:
                response = await client.post(target, json=update.to_dict(), headers=headers)
                response.raise_for_status()  # stop here: Telegram keeps it for the next run
                offset, forwarded = update.update_id + 1, forwarded + 1
    return forwarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("webhook", help="register PUBLIC_BASE_URL/channels/telegram")
    polling = commands.add_parser("poll", help="forward updates to a local gateway")
    polling.add_argument("--gateway", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    settings = get_settings()
    if not settings.telegram_enabled:
        raise SystemExit("TELEGRAM_BOT_TOKEN is not set")
    bot = make_bot(settings)
    if args.command == "webhook":
        print(f"webhook set to {asyncio.run(register_webhook(settings, bot))}")
    else:
        asyncio.run(poll(settings, bot, args.gateway))


if __name__ == "__main__":
    main()
