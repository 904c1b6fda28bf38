//! liweb's TCP example: telemetry agents (sensors, daemons) report readings
//! to a server over raw TCP, the way the multiclient-websocket library is
//! used, with liweb's typed events on top.
//!
//! ```text
//! cargo run -p telemetry --bin telemetry-server                # listens on 127.0.0.1:4000
//! cargo run -p telemetry --bin telemetry-agent -- north-1 north # in other terminals
//! cargo run -p telemetry --bin telemetry-agent -- south-1 south
//! ```
//!
//! Wire contract (JSON by default; agents may pick MessagePack or bincode in
//! their `HELLO`, see `docs/PROTOCOL.md`):
//! - agent → server `register {"name", "region"}`: stored in the
//!   connection's data; the agent gets `registered {"agents"}`, how many
//!   agents are registered;
//! - agent → server `reading {"metric", "value"}`: the server keeps the last
//!   value of each agent and metric; a value over [`ALERT_THRESHOLD`] sends
//!   `alert {"region", "from", "metric", "value"}` to every registered agent
//!   of the same region (a broadcast with a filter over connection data),
//!   the sender included;
//! - agent → server request `average "<metric>"`: answered with the mean of
//!   the last values of every agent for that metric, or `null` when none
//!   has reported it;
//! - server → agent request `status`: the agent answers
//!   `{"name", "uptime_secs"}`; [`census`] asks every agent at once and
//!   waits at most a timeout for each.

use std::{collections::HashMap, sync::Arc, time::Duration};

use liweb::{ConnId, RequestError, prelude::*};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// A reading over this value raises an alert in the agent's region.
pub const ALERT_THRESHOLD: f64 = 90.0;

/// What agents send.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum AgentIn {
    /// Names the agent and its region.
    Register {
        /// The agent's name.
        name: String,
        /// Its region; alerts go to the agents of one region.
        region: String,
    },
    /// One measurement.
    Reading {
        /// What was measured (`cpu`, `temp`, ...).
        metric: String,
        /// The value.
        value: f64,
    },
    /// As a request: the mean of the agents' last values of a metric.
    Average(String),
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum AgentOut {
    /// The answer to `register`.
    Registered {
        /// How many agents are registered, this one included.
        agents: usize,
    },
    /// A reading over the threshold in the agent's region.
    Alert(Alert),
    /// As a request: the agent answers with its [`Status`].
    Status,
}

/// An alert, sent to the agents of one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The region.
    pub region: String,
    /// The agent that reported the reading.
    pub from: String,
    /// The metric.
    pub metric: String,
    /// The value over the threshold.
    pub value: f64,
}

/// An agent's answer to the `status` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The agent's name.
    pub name: String,
    /// How long it has been running.
    pub uptime_secs: u64,
}

/// What the server knows of a registered agent, kept in its connection's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The agent's name.
    pub name: String,
    /// Its region.
    pub region: String,
}

/// The server's state: the last value of each agent's metrics.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    last: Arc<Mutex<HashMap<(ConnId, String), f64>>>,
}

/// The telemetry server type.
pub type TelemetryServer = Server<AgentIn, AgentOut>;

#[liweb::handler(AgentIn::Register)]
async fn register(
    conn: Conn<AgentOut>,
    server: TelemetryServer,
    agent: agent_in::Register,
) -> Result<(), liweb::EmitError> {
    conn.set_data(Agent {
        name: agent.name,
        region: agent.region,
    });
    let agents = server
        .connections()
        .iter()
        .filter(|conn| conn.data::<Agent>().is_some())
        .count();
    conn.emit(AgentOut::Registered { agents })
}

#[liweb::handler(AgentIn::Reading)]
async fn reading(
    conn: Conn<AgentOut>,
    server: TelemetryServer,
    State(telemetry): State<Telemetry>,
    reading: agent_in::Reading,
) -> Result<(), liweb::EncodeError> {
    // An agent that has not registered has no region to alert.
    let Some(agent) = conn.data::<Agent>() else {
        return Ok(());
    };
    telemetry
        .last
        .lock()
        .await
        .insert((conn.id(), reading.metric.clone()), reading.value);
    if reading.value > ALERT_THRESHOLD {
        let alert = Alert {
            region: agent.region.clone(),
            from: agent.name,
            metric: reading.metric,
            value: reading.value,
        };
        server.broadcast_filter(
            |conn| {
                conn.data::<Agent>()
                    .is_some_and(|a| a.region == agent.region)
            },
            AgentOut::Alert(alert),
        )?;
    }
    Ok(())
}

#[liweb::handler(AgentIn::Average)]
async fn average(
    State(telemetry): State<Telemetry>,
    metric: String,
) -> Result<Option<f64>, std::convert::Infallible> {
    let last = telemetry.last.lock().await;
    let values: Vec<f64> = last
        .iter()
        .filter(|((_, m), _)| *m == metric)
        .map(|(_, value)| *value)
        .collect();
    Ok((!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64))
}

/// The telemetry server; serve it with [`Server::serve_tcp`].
pub fn server() -> TelemetryServer {
    let telemetry = Telemetry::default();
    let on_disconnect = telemetry.clone();
    TelemetryServer::builder()
        .state(telemetry)
        .handlers(liweb::handlers![exhaustive AgentIn => register, reading, average])
        .on_disconnect(move |conn: Conn<AgentOut>| {
            let telemetry = on_disconnect.clone();
            // A gone agent's values no longer count in averages.
            async move {
                telemetry
                    .last
                    .lock()
                    .await
                    .retain(|(id, _), _| *id != conn.id())
            }
        })
        .build()
}

/// Asks every registered agent for its [`Status`], waiting at most
/// `timeout` for each (all at once); an agent that does not answer in time
/// is listed with [`RequestError::Timeout`].
pub async fn census(
    server: &TelemetryServer,
    timeout: Duration,
) -> Vec<(Agent, Result<Status, RequestError>)> {
    let asks = server.connections().into_iter().filter_map(|conn| {
        let agent = conn.data::<Agent>()?;
        Some(async move {
            let status = conn
                .request::<Status>(AgentOut::Status)
                .timeout(timeout)
                .await;
            (agent, status)
        })
    });
    let tasks: Vec<_> = asks.map(tokio::spawn).collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(answer) = task.await {
            answers.push(answer);
        }
    }
    answers
}
