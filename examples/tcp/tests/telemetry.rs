//! The telemetry example over a real TCP socket: alerts reach only the
//! agents of the reading's region, and requests go both ways with timeouts.

use std::time::Duration;

use liweb::{
    RequestError,
    client::{Client, Incoming},
};
use telemetry::{AgentIn, AgentOut, Alert, Status, TelemetryServer, agent_out};

const WAIT: Duration = Duration::from_secs(5);

type Agent = Client<AgentOut, AgentIn>;

async fn start() -> (TelemetryServer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let server = telemetry::server();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_tcp(listener).await.unwrap() });
    (server, url)
}

async fn next(agent: &mut Agent) -> AgentOut {
    match tokio::time::timeout(WAIT, agent.recv()).await {
        Ok(Some(Incoming::Event(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Connects and registers an agent; `answers` makes it answer status requests.
async fn agent(url: &str, name: &str, region: &str, answers: bool) -> Agent {
    let mut agent = tokio::time::timeout(WAIT, Agent::connect(url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    if answers {
        let me = name.to_owned();
        agent.on_request::<agent_out::Status, _, _>(move |()| Status {
            name: me.clone(),
            uptime_secs: 7,
        });
    }
    agent
        .emit(AgentIn::Register {
            name: name.into(),
            region: region.into(),
        })
        .unwrap();
    assert!(matches!(
        next(&mut agent).await,
        AgentOut::Registered { .. }
    ));
    agent
}

#[tokio::test]
async fn alerts_reach_the_region_and_requests_go_both_ways_with_timeouts() {
    let (server, url) = start().await;
    let mut north_1 = agent(&url, "north-1", "north", true).await;
    let mut north_2 = agent(&url, "north-2", "north", true).await;
    let mut south_1 = agent(&url, "south-1", "south", false).await;
    assert_eq!(server.connection_count(), 3);

    // Readings under the threshold alert nobody; one over it alerts the north.
    north_1
        .emit(AgentIn::Reading {
            metric: "cpu".into(),
            value: 40.0,
        })
        .unwrap();
    south_1
        .emit(AgentIn::Reading {
            metric: "cpu".into(),
            value: 20.0,
        })
        .unwrap();
    north_2
        .emit(AgentIn::Reading {
            metric: "cpu".into(),
            value: 95.0,
        })
        .unwrap();
    let alert = AgentOut::Alert(Alert {
        region: "north".into(),
        from: "north-2".into(),
        metric: "cpu".into(),
        value: 95.0,
    });
    assert_eq!(next(&mut north_1).await, alert);
    assert_eq!(next(&mut north_2).await, alert);

    // A client request with a timeout: the mean of the last values.
    let average: Option<f64> = south_1
        .request(AgentIn::Average("cpu".into()))
        .timeout(WAIT)
        .await
        .unwrap();
    assert_eq!(average, Some((40.0 + 20.0 + 95.0) / 3.0));
    let none: Option<f64> = south_1
        .request(AgentIn::Average("disk".into()))
        .timeout(WAIT)
        .await
        .unwrap();
    assert_eq!(none, None);
    // The south got no alert: the next thing it gets is nothing at all.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), south_1.recv())
            .await
            .is_err()
    );

    // Server requests with a timeout: the north answers, the south does not.
    let mut census = telemetry::census(&server, Duration::from_millis(200)).await;
    census.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let names: Vec<_> = census
        .iter()
        .map(|(agent, _)| agent.name.as_str())
        .collect();
    assert_eq!(names, ["north-1", "north-2", "south-1"]);
    assert_eq!(
        census[0].1.as_ref().unwrap(),
        &Status {
            name: "north-1".into(),
            uptime_secs: 7
        }
    );
    assert_eq!(census[1].1.as_ref().unwrap().name, "north-2");
    assert!(matches!(census[2].1, Err(RequestError::Timeout(_))));
    // The south saw the request it did not answer.
    match tokio::time::timeout(WAIT, south_1.recv()).await {
        Ok(Some(Incoming::Request(AgentOut::Status, _))) => {}
        other => panic!("expected the status request, got {other:?}"),
    }
}
