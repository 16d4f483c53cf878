// A discord.js 14 bot, unchanged library, pointed at discore-mock.
//
// Driven by crates/discore-mock/tests/thirdparty.rs, which reads what the
// bot saw as JSON lines on stdout (see ../python/bot.py for the lines).
//
// Environment: DISCORE_REST (the REST API root, .../api: discord.js adds
// the version), DISCORE_TOKEN, DISCORE_COMPRESSION ("zlib-stream" or
// "none": discord.js 14 uses zlib-stream when the zlib-sync package loads,
// none when it does not; see block-zlib-sync.js).
'use strict';

const { Client, GatewayIntentBits } = require('discord.js');

const report = (fields) => process.stdout.write(`${JSON.stringify(fields)}\n`);

const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
  // The one setting discord.js needs: where REST is. The gateway URL comes
  // from GET /gateway/bot.
  rest: { api: process.env.DISCORE_REST },
});

client.on('shardReady', (shardId) => {
  const session = client.ws.shards.get(shardId)?.sessionInfo?.sessionId ?? null;
  report({ ready: shardId, session });
});

client.once('clientReady', async () => {
  for (const guild of client.guilds.cache.values()) {
    report({ guild: guild.id, shard: guild.shardId });
  }
  const guild = client.guilds.cache.first();
  const channel = guild.channels.cache.find((c) => c.isTextBased());
  const message = await channel.send('hello from discord.js');
  report({ sent: message.id });
});

client.on('messageCreate', (message) => {
  report({ message: message.id, content: message.content, shard: message.guild?.shardId ?? null });
});

client.on('shardResume', (shardId) => report({ resumed: shardId }));
client.on('error', (error) => process.stderr.write(`discord.js error: ${error}\n`));

client.login(process.env.DISCORE_TOKEN).catch((error) => {
  process.stderr.write(`login failed: ${error.stack}\n`);
  process.exit(1);
});
