//! Commands from worker processes to the process that owns the shard:
//! NATS request/reply on one subject per shard.

use super::EventBus;
use crate::error::RemoteCommandError;
use actix::Addr;
use discore_gateway::Command;
use discore_manager::{CommandTarget, SendCommandTo, ShardManager};
use discore_protocol::{OpCode, commands, shard_for_guild};
use futures_util::{StreamExt as _, future::join_all};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use twilight_model::gateway::payload::outgoing::update_presence::UpdatePresencePayload;

/// What the owner answers.
#[derive(Debug, Deserialize, Serialize)]
struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Encodes a command as the gateway payload `{"op": N, "d": …}` that
/// travels over NATS.
///
/// # Errors
///
/// [`RemoteCommandError::Encode`] when it does not serialize, or for a
/// command kind this version does not know.
pub fn encode_command(command: &Command) -> Result<String, RemoteCommandError> {
    let encoded = match command {
        Command::UpdatePresence(p) => commands::encode(OpCode::PresenceUpdate, p),
        Command::RequestGuildMembers(r) => commands::encode(OpCode::RequestGuildMembers, r),
        Command::UpdateVoiceState(v) => commands::encode(OpCode::VoiceStateUpdate, v),
        Command::RequestSoundboardSounds(r) => commands::encode(OpCode::RequestSoundboardSounds, r),
        Command::RequestChannelInfo(r) => commands::encode(OpCode::RequestChannelInfo, r),
        Command::Raw(json) => Ok(json.clone()),
        other => {
            return Err(RemoteCommandError::Encode(format!(
                "unsupported command {other:?}"
            )));
        }
    };
    encoded.map_err(|e| RemoteCommandError::Encode(e.to_string()))
}

/// Turns a payload back into a command: a presence update becomes
/// [`Command::UpdatePresence`] (so it is also the presence of the next
/// identify), anything else [`Command::Raw`], checked by the shard.
fn decode_command(json: &str) -> Command {
    #[derive(Deserialize)]
    struct Presence {
        op: u8,
        d: UpdatePresencePayload,
    }
    match serde_json::from_str::<Presence>(json) {
        Ok(presence) if presence.op == OpCode::PresenceUpdate.code() => {
            Command::UpdatePresence(presence.d)
        }
        _ => Command::Raw(json.to_owned()),
    }
}

/// Sends commands to the shards of a bot, wherever they run: a NATS
/// request to the shard's subject, answered by the process holding its
/// lease once the shard queued the command.
///
/// ```no_run
/// use discore_cluster::{CommandClient, EventBus};
/// use discore_manager::CommandTarget;
/// use discore_gateway::Command;
///
/// # async fn run(bus: EventBus, command: Command) -> Result<(), Box<dyn std::error::Error>> {
/// let commands = CommandClient::new(bus, 24);
/// let queued = commands.send(CommandTarget::Shard(3), command).await?;
/// assert_eq!(queued, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CommandClient {
    bus: EventBus,
    total: u32,
    timeout: Duration,
}

impl CommandClient {
    /// A client for a bot of `total` shards (for guild routing and
    /// broadcasts).
    pub fn new(bus: EventBus, total: u32) -> Self {
        Self {
            bus,
            total: total.max(1),
            timeout: Duration::from_secs(5),
        }
    }

    /// How long to wait for the owner's answer. Default 5 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `command` to `target`; answers how many shards queued it. A
    /// broadcast skips shards nobody runs.
    ///
    /// # Errors
    ///
    /// For a single shard: [`RemoteCommandError::NoOwner`],
    /// [`RemoteCommandError::Timeout`], [`RemoteCommandError::Refused`];
    /// [`RemoteCommandError::Encode`] for a command that cannot be sent.
    pub async fn send(
        &self,
        target: CommandTarget,
        command: Command,
    ) -> Result<usize, RemoteCommandError> {
        let payload = encode_command(&command)?;
        let shards: Vec<u32> = match target {
            CommandTarget::Shard(shard) => vec![shard],
            CommandTarget::Guild(guild) => vec![shard_for_guild(guild.get(), self.total)],
            CommandTarget::AllShards => (0..self.total).collect(),
        };
        if let [shard] = shards[..]
            && target != CommandTarget::AllShards
        {
            return self.request(shard, payload).await.map(|()| 1);
        }
        let results = join_all(shards.iter().map(|s| self.request(*s, payload.clone()))).await;
        let mut queued = 0;
        for (shard, result) in shards.iter().zip(results) {
            match result {
                Ok(()) => queued += 1,
                Err(error) => log::debug!("shard {shard} missed a broadcast command: {error}"),
            }
        }
        Ok(queued)
    }

    /// Asks the cluster to re-shard to `shards` shards, without downtime
    /// (one gateway node takes the request; `docs/cluster.md`,
    /// "Re-sharding"). Answers once the re-sharding started; it runs on.
    ///
    /// # Errors
    ///
    /// [`RemoteCommandError::Refused`] (shard `0` in the error) when the
    /// cluster refuses (a re-sharding under way, or not more shards),
    /// [`RemoteCommandError::NoOwner`] when no gateway node runs,
    /// [`RemoteCommandError::Timeout`].
    pub async fn reshard(&self, shards: u32) -> Result<(), RemoteCommandError> {
        let payload = serde_json::to_vec(&crate::node::ReshardRequest { shards })
            .map_err(|e| RemoteCommandError::Encode(e.to_string()))?;
        let request = self
            .bus
            .client()
            .request(self.bus.control_subject("reshard"), payload.into());
        let message = match actix_rt::time::timeout(self.timeout, request).await {
            Err(_) => return Err(RemoteCommandError::Timeout { shard: 0 }),
            Ok(Err(error)) => {
                return Err(match error.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        RemoteCommandError::NoOwner { shard: 0 }
                    }
                    async_nats::RequestErrorKind::TimedOut => {
                        RemoteCommandError::Timeout { shard: 0 }
                    }
                    _ => RemoteCommandError::Transport(error.to_string()),
                });
            }
            Ok(Ok(message)) => message,
        };
        let answer: crate::node::ReshardAnswer = serde_json::from_slice(&message.payload)
            .map_err(|e| RemoteCommandError::Transport(format!("unreadable answer: {e}")))?;
        match answer.error {
            None => Ok(()),
            Some(reason) => Err(RemoteCommandError::Refused { shard: 0, reason }),
        }
    }

    async fn request(&self, shard: u32, payload: String) -> Result<(), RemoteCommandError> {
        let subject = self.bus.command_subject(shard);
        let request = self.bus.client().request(subject, payload.into());
        let message = match actix_rt::time::timeout(self.timeout, request).await {
            Err(_) => return Err(RemoteCommandError::Timeout { shard }),
            Ok(Err(error)) => {
                return Err(match error.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        RemoteCommandError::NoOwner { shard }
                    }
                    async_nats::RequestErrorKind::TimedOut => RemoteCommandError::Timeout { shard },
                    _ => RemoteCommandError::Transport(error.to_string()),
                });
            }
            Ok(Ok(message)) => message,
        };
        let answer: Answer = serde_json::from_slice(&message.payload).map_err(|e| {
            RemoteCommandError::Transport(format!("unreadable answer from shard {shard}: {e}"))
        })?;
        match answer.error {
            None => Ok(()),
            Some(reason) => Err(RemoteCommandError::Refused { shard, reason }),
        }
    }
}

/// Answers the command requests of `shard` by queueing them on `manager`,
/// until the subscription ends (abort the task to stop).
pub(crate) async fn serve_commands(bus: EventBus, shard: u32, manager: Addr<ShardManager>) {
    let subject = bus.command_subject(shard);
    let mut requests = match bus.client().subscribe(subject.clone()).await {
        Ok(requests) => requests,
        Err(error) => {
            log::error!("shard {shard}: cannot serve commands on {subject}: {error}");
            return;
        }
    };
    log::debug!("shard {shard}: serving commands on {subject}");
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let answer = match std::str::from_utf8(&request.payload) {
            Err(_) => Answer {
                error: Some("the command is not UTF-8".into()),
            },
            Ok(json) => {
                let command = decode_command(json);
                match manager.send(SendCommandTo::shard(shard, command)).await {
                    Ok(Ok(_)) => Answer { error: None },
                    Ok(Err(error)) => Answer {
                        error: Some(error.to_string()),
                    },
                    Err(_) => Answer {
                        error: Some("the shard is stopping".into()),
                    },
                }
            }
        };
        let payload = serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec());
        if let Err(error) = bus.client().publish(reply, payload.into()).await {
            log::warn!("shard {shard}: answering a command failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_command, encode_command};
    use discore_gateway::Command;

    #[test]
    fn presence_round_trips_as_a_presence() {
        let json = r#"{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}"#;
        let command = decode_command(json);
        assert!(matches!(command, Command::UpdatePresence(_)), "{command:?}");
        let encoded = encode_command(&command).expect("encodes");
        assert!(encoded.starts_with(r#"{"op":3,"#), "{encoded}");
        let raw = decode_command(r#"{"op":8,"d":{"guild_id":"1","query":"","limit":0}}"#);
        assert!(matches!(raw, Command::Raw(_)));
    }
}
