// An @discordjs/ws 2 gateway client (with @discordjs/rest), unchanged
// libraries, pointed at discore-mock.
//
// Driven by crates/discore-mock/tests/thirdparty.rs, which reads what the
// client saw as JSON lines on stdout (see ../python/bot.py for the lines).
//
// Environment: DISCORE_REST (the REST API root, .../api), DISCORE_TOKEN,
// DISCORE_SHARDS, DISCORE_COMPRESSION ("zlib-stream": node's own zlib, or
// "none").
'use strict';

const { REST } = require('@discordjs/rest');
const { WebSocketManager, WebSocketShardEvents, CompressionMethod } = require('@discordjs/ws');
const { GatewayIntentBits, GatewayDispatchEvents, Routes } = require('discord-api-types/v10');

const report = (fields) => process.stdout.write(`${JSON.stringify(fields)}\n`);

// The one setting needed: where REST is; the gateway URL comes from
// GET /gateway/bot.
const rest = new REST({ api: process.env.DISCORE_REST }).setToken(process.env.DISCORE_TOKEN);
const manager = new WebSocketManager({
  token: process.env.DISCORE_TOKEN,
  intents: GatewayIntentBits.Guilds | GatewayIntentBits.GuildMessages | GatewayIntentBits.MessageContent,
  rest,
  shardCount: Number(process.env.DISCORE_SHARDS ?? '1'),
  compression: process.env.DISCORE_COMPRESSION === 'zlib-stream' ? CompressionMethod.ZlibNative : null,
});

let sentHello = false;
manager.on(WebSocketShardEvents.Ready, (data, shardId) => report({ ready: shardId, session: data.session_id }));
manager.on(WebSocketShardEvents.Resumed, (shardId) => report({ resumed: shardId }));
manager.on(WebSocketShardEvents.Error, (error) => process.stderr.write(`@discordjs/ws error: ${error}\n`));
manager.on(WebSocketShardEvents.Dispatch, async (payload, shardId) => {
  if (payload.t === GatewayDispatchEvents.GuildCreate) {
    report({ guild: payload.d.id, shard: shardId });
    if (!sentHello) {
      sentHello = true;
      const channel = payload.d.channels.find((c) => c.type === 0);
      const message = await rest.post(Routes.channelMessages(channel.id), { body: { content: 'hello from @discordjs/ws' } });
      report({ sent: message.id });
    }
  } else if (payload.t === GatewayDispatchEvents.MessageCreate) {
    report({ message: payload.d.id, content: payload.d.content, shard: shardId });
  }
});

manager.connect().catch((error) => {
  process.stderr.write(`connect failed: ${error.stack}\n`);
  process.exit(1);
});
