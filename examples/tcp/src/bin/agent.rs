//! A telemetry agent: `telemetry-agent <name> <region> [tcp://host:port]`.
//! Reports a made-up CPU reading every second, prints the alerts of its
//! region, answers the server's status requests, and every fifth reading
//! asks the server for the average CPU with a timeout.

use std::time::{Duration, Instant};

use liweb::client::{Client, Incoming};
use telemetry::{AgentIn, AgentOut, Status, agent_out};

#[tokio::main]
async fn main() -> Result<(), liweb::client::ClientError> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "agent".to_owned());
    let region = args.next().unwrap_or_else(|| "north".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "tcp://127.0.0.1:4000".to_owned());

    let mut client = Client::<AgentOut, AgentIn>::connect(&url).await?;
    let started = Instant::now();
    let me = name.clone();
    client.on_request::<agent_out::Status, _, _>(move |()| Status {
        name: me.clone(),
        uptime_secs: started.elapsed().as_secs(),
    });
    client.emit(AgentIn::Register {
        name: name.clone(),
        region,
    })?;

    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = every.tick() => {
                tick += 1;
                // A saw-tooth CPU load that crosses the threshold now and then.
                let value = (tick * 17 % 100) as f64;
                client.emit(AgentIn::Reading { metric: "cpu".into(), value })?;
                if tick.is_multiple_of(5) {
                    let average: Option<f64> = client
                        .request(AgentIn::Average("cpu".into()))
                        .timeout(Duration::from_secs(2))
                        .await?;
                    println!("[{name}] average cpu: {average:?}");
                }
            }
            incoming = client.recv() => match incoming {
                Some(Incoming::Event(AgentOut::Alert(alert))) => {
                    println!("[{name}] ALERT {} {} = {} in {}", alert.from, alert.metric, alert.value, alert.region);
                }
                Some(Incoming::Event(AgentOut::Registered { agents })) => {
                    println!("[{name}] registered; {agents} agents online");
                }
                Some(Incoming::Closed(close)) => {
                    println!("[{name}] closed: {close:?}");
                    return Ok(());
                }
                None => return Ok(()),
                Some(other) => println!("[{name}] {other:?}"),
            }
        }
    }
}
