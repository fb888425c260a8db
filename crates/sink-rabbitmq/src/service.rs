//! The RabbitMQ sink's service: the connection and its confirm-mode channel (reopened
//! behind a [`ReconnectGate`]), one `basic.publish` per message and its publisher confirm;
//! the batch loop is [`relay_sink::driver`]'s.

use super::*;

/// The RabbitMQ sink (see the crate documentation).
pub struct RabbitMqSink {
    name: String,
    url: String,
    exchange: String,
    declare_exchange: bool,
    routing: Routing,
    mandatory: bool,
    confirm_timeout: Duration,
    connect_timeout: Duration,
    max_in_flight: usize,
    state: tokio::sync::Mutex<ConnState>,
    /// The current connection's status, for `ready()` without waiting on `state`.
    current: parking_lot::Mutex<Option<ConnectionStatus>>,
}

impl fmt::Debug for RabbitMqSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqSink")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing.routing_key.as_str())
            .finish_non_exhaustive()
    }
}

struct ConnState {
    conn: Option<Connection>,
    channel: Option<Channel>,
    /// The backoff between connection attempts.
    gate: ReconnectGate,
}

fn retryable(reason: Reason, detail: impl Into<String>) -> PublishError {
    PublishError::retryable(reason, detail)
}

impl RabbitMqSink {
    /// Validates `cfg`, connects, declares the exchange (unless disabled) and opens a
    /// confirm-mode channel. Fails if the broker cannot be reached within
    /// `connect_timeout`; after that, lost connections are re-established by `publish`.
    pub async fn connect(
        name: &str,
        cfg: &RabbitMqSinkConfig,
    ) -> Result<RabbitMqSink, RabbitMqSinkError> {
        let routing = cfg.routing(name)?;
        let sink = RabbitMqSink {
            name: name.to_owned(),
            url: cfg.url.clone(),
            exchange: cfg.exchange.clone(),
            declare_exchange: cfg.declare_exchange,
            routing,
            mandatory: cfg.mandatory,
            confirm_timeout: cfg.confirm_timeout,
            connect_timeout: cfg.connect_timeout,
            max_in_flight: cfg.max_in_flight,
            state: tokio::sync::Mutex::new(ConnState {
                conn: None,
                channel: None,
                gate: ReconnectGate::new(cfg.initial_reconnect_backoff, cfg.max_reconnect_backoff),
            }),
            current: parking_lot::Mutex::new(None),
        };
        {
            let mut state = sink.state.lock().await;
            sink.open(&mut state)
                .await
                .map_err(|e| RabbitMqSinkError::Connect {
                    sink: name.to_owned(),
                    url: redact_url(&cfg.url),
                    detail: e.to_string(),
                })?;
        }
        tracing::info!(sink = name, url = %redact_url(&cfg.url), exchange = %cfg.exchange, "rabbitmq sink connected");
        Ok(sink)
    }

    /// The routing key a record is published with.
    pub fn routing_key_for(&self, message: &Message) -> String {
        self.routing.routing_key_for(message)
    }

    fn set_current(&self, conn: Option<ConnectionStatus>) {
        let mut cur = self.current.lock();
        *cur = conn;
    }

    /// Connects if needed, then opens a confirm-mode channel. Bounded by timeouts.
    async fn open(&self, state: &mut ConnState) -> Result<Channel, PublishError> {
        let conn_ok = state.conn.as_ref().is_some_and(|c| c.status().connected());
        if !conn_ok {
            state.channel = None;
            if let Some(old) = state.conn.take() {
                // Best effort: free its resources; it is already broken.
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), old.close(320, "reconnect")).await;
            }
            let connect = Connection::connect(&self.url, ConnectionProperties::default());
            let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(retryable(Reason::ConnectFailed, e.to_string())),
                Err(_) => {
                    return Err(retryable(
                        Reason::ConnectFailed,
                        format!("no connection within {:?}", self.connect_timeout),
                    ))
                }
            };
            state.conn = Some(conn);
        }
        let Some(conn) = state.conn.as_ref() else {
            return Err(retryable(Reason::Disconnected, "no connection"));
        };
        let setup = async {
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            if self.declare_exchange {
                channel
                    .exchange_declare(
                        &self.exchange,
                        ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
            }
            Ok::<_, lapin::Error>(channel)
        };
        let channel = match tokio::time::timeout(self.connect_timeout, setup).await {
            Ok(Ok(ch)) => ch,
            Ok(Err(e)) => return Err(retryable(Reason::ChannelFailed, e.to_string())),
            Err(_) => {
                // The connection looks up but does not answer: start over with a new one.
                state.conn = None;
                self.set_current(None);
                return Err(retryable(Reason::ChannelFailed, "channel setup timed out"));
            }
        };
        state.channel = Some(channel.clone());
        self.set_current(Some(conn.status().clone()));
        Ok(channel)
    }

    /// A usable channel: the current one, or a new one (reconnecting first when the
    /// connection is gone), respecting the reconnect backoff.
    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut state = self.state.lock().await;
        if let (Some(conn), Some(ch)) = (&state.conn, &state.channel) {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        if let Err(wait) = state.gate.check(Instant::now()) {
            return Err(retryable(
                Reason::Disconnected,
                format!("broker unreachable; next connection attempt in {wait:?}"),
            ));
        }
        match self.open(&mut state).await {
            Ok(ch) => {
                let failures = state.gate.succeeded();
                if failures > 0 {
                    tracing::info!(sink = %self.name, after = failures, "rabbitmq sink reconnected");
                }
                Ok(ch)
            }
            Err(e) => {
                let wait = state.gate.failed(Instant::now());
                tracing::warn!(sink = %self.name, error = %e, retry_in = ?wait, "rabbitmq sink cannot open a channel");
                Err(e)
            }
        }
    }

    /// Forgets `channel` (if still current) so that the next publish opens a new one.
    async fn discard(&self, channel: &Channel) {
        let mut state = self.state.lock().await;
        if state
            .channel
            .as_ref()
            .is_some_and(|c| c.id() == channel.id())
        {
            state.channel = None;
            if state.conn.as_ref().is_some_and(|c| !c.status().connected()) {
                self.set_current(None);
            }
        }
    }
}

fn map_lapin_error(e: &lapin::Error) -> PublishError {
    match e {
        lapin::Error::InvalidConnectionState(_) | lapin::Error::IOError(_) => {
            retryable(Reason::Disconnected, e.to_string())
        }
        _ => retryable(Reason::ChannelClosed, e.to_string()),
    }
}

#[async_trait::async_trait]
impl Sink for RabbitMqSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let channel = match self.channel().await {
            Ok(ch) => ch,
            Err(e) => return fail_all(batch, &e),
        };
        let options = BasicPublishOptions {
            mandatory: self.mandatory,
            ..Default::default()
        };
        let timeout = self.confirm_timeout;
        let mut broken = false;
        let mut confirmations = Confirmations::new(batch.len(), self.max_in_flight);
        for (i, message) in batch.iter().enumerate() {
            if broken {
                confirmations.failed(
                    i,
                    retryable(
                        Reason::ChannelClosed,
                        "not sent: the channel failed earlier in this batch",
                    ),
                );
                continue;
            }
            confirmations.wait_for_room().await;
            let (routing_key, props, body) = match self.routing.encode(message) {
                Ok(b) => b,
                Err(e) => {
                    confirmations.failed(i, e);
                    continue;
                }
            };
            let send = channel.basic_publish(&self.exchange, &routing_key, options, &body, props);
            let confirm = match tokio::time::timeout(timeout, send).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    confirmations.failed(i, map_lapin_error(&e));
                    broken = true;
                    continue;
                }
                Err(_) => {
                    confirmations.failed(
                        i,
                        retryable(Reason::Timeout, "basic.publish not written in time"),
                    );
                    broken = true;
                    continue;
                }
            };
            confirmations.sent(i, async move {
                match tokio::time::timeout(timeout, confirm).await {
                    Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(ret)))) => Err(PublishError::refused(
                        Reason::Unroutable,
                        format!(
                            "returned by the broker: {} {} (routing key {routing_key}): bind a queue to it",
                            ret.reply_code,
                            ret.reply_text.as_str()
                        ),
                    )),
                    Ok(Ok(Confirmation::Nack(_))) => Err(retryable(
                        Reason::Nack,
                        format!("broker nacked {routing_key}"),
                    )),
                    Ok(Ok(Confirmation::NotRequested)) => Err(retryable(
                        Reason::Unconfirmed,
                        "channel is not in confirm mode",
                    )),
                    Ok(Err(e)) => Err(map_lapin_error(&e)),
                    Err(_) => Err(retryable(
                        Reason::Timeout,
                        format!("no publisher confirm within {timeout:?}"),
                    )),
                }
            });
        }
        let results = confirmations.finish(&self.name).await;
        let channel_broken = results
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.reason().breaks_connection()));
        if broken || channel_broken || !channel.status().connected() {
            self.discard(&channel).await;
        }
        results
    }

    async fn ready(&self) -> bool {
        let cur = self.current.lock();
        cur.as_ref().is_some_and(|c| c.connected())
    }

    async fn close(&self) -> Result<(), PublishError> {
        let mut state = self.state.lock().await;
        state.channel = None;
        self.set_current(None);
        if let Some(conn) = state.conn.take() {
            if conn.status().connected() {
                match tokio::time::timeout(self.connect_timeout, conn.close(200, "shutdown")).await
                {
                    Ok(Ok(())) => {}
                    // Already closing (lapin closes channels concurrently): nothing to do.
                    Ok(Err(
                        lapin::Error::InvalidChannelState(_)
                        | lapin::Error::InvalidConnectionState(_),
                    )) => {}
                    Ok(Err(e)) => return Err(map_lapin_error(&e)),
                    Err(_) => return Err(retryable(Reason::Timeout, "connection close timed out")),
                }
            }
        }
        Ok(())
    }
}
