"""A discord.py bot, unchanged library, pointed at discore-mock.

Driven by crates/discore-mock/tests/thirdparty.rs, which reads what the bot
saw as JSON lines on stdout:

  {"ready": shard}                  a shard is ready
  {"guild": id, "shard": n}         a guild is available (from GUILD_CREATE)
  {"message": id, "content": text}  MESSAGE_CREATE
  {"resumed": shard}                RESUMED
  {"sent": id}                      the bot created a message through REST

Environment: DISCORE_REST (the REST base, .../api/v10), DISCORE_GATEWAY (the
gateway URL), DISCORE_TOKEN, DISCORE_SHARDS (1: discord.Client, more:
discord.AutoShardedClient with that shard count), DISCORE_COMPRESSION
("zstd-stream" or "zlib-stream": discord.py uses zstd-stream when the
zstandard package is importable and zlib-stream when it is not).
"""

import asyncio
import json
import logging
import os
import sys

if os.environ.get("DISCORE_COMPRESSION") == "zlib-stream":
    # discord.py picks zstd-stream when zstandard imports; without it,
    # zlib-stream. The library itself is not touched.
    sys.modules["zstandard"] = None

import discord  # noqa: E402
import discord.gateway  # noqa: E402
import discord.http  # noqa: E402
import yarl  # noqa: E402


def report(**fields):
    print(json.dumps(fields), flush=True)


# The two settings discord.py needs: where REST is, and where the gateway is
# (discord.Client connects to DEFAULT_GATEWAY without asking /gateway).
discord.http.Route.BASE = os.environ["DISCORE_REST"]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORE_GATEWAY"])

shards = int(os.environ.get("DISCORE_SHARDS", "1"))
intents = discord.Intents.none()
intents.guilds = True
intents.guild_messages = True
intents.message_content = True

if shards > 1:
    client = discord.AutoShardedClient(intents=intents, shard_count=shards)
else:
    client = discord.Client(intents=intents)

sent_hello = False


@client.event
async def on_shard_ready(shard_id):
    report(ready=shard_id)


@client.event
async def on_ready():
    global sent_hello
    if shards == 1:
        report(ready=0, session=client.ws.session_id)
    for guild in client.guilds:
        report(guild=str(guild.id), shard=guild.shard_id)
    if not sent_hello:
        sent_hello = True
        channel = client.guilds[0].text_channels[0]
        message = await channel.send("hello from discord.py")
        report(sent=str(message.id))


@client.event
async def on_message(message):
    report(message=str(message.id), content=message.content, shard=message.guild.shard_id)


@client.event
async def on_resumed():
    if shards == 1:
        report(resumed=0)


@client.event
async def on_shard_resumed(shard_id):
    report(resumed=shard_id)


async def main():
    # The library's log (and any error in a handler) goes to stderr, which
    # the test keeps in a file.
    discord.utils.setup_logging(level=logging.INFO)
    async with client:
        await client.start(os.environ["DISCORE_TOKEN"])


asyncio.run(main())
